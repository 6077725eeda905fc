"""The README's "Does it work?" table: every proof experiment side by side, from its results.

Each column is one ``experiments/results/<name>.json`` written by ``policysearch experiment``
(the ones with a search and a validation); every figure is read from it, none typed. ``make
readme`` (``python -m policysearch.search.side_by_side``) rewrites the part of README.md between
the two markers; ``policysearch experiment`` does the same after it writes its results, and a
test checks that the README says what the committed JSON says.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from policysearch.errors import ConfigError
from policysearch.paths import PROJECT_ROOT, RESULTS_DIR

BEGIN = ("<!-- side by side: generated from experiments/results/*.json by `make readme`; "
         "do not edit -->")
END = "<!-- side by side: end -->"

COMPARED = (("crop_flip", "crop+flip"), ("randaugment_n2_m9", "RandAugment N=2 M=9"),
            ("trivialaugment", "TrivialAugment"))
"""The stock policies a user would have run, in the table's order."""

ROWS = ("Target training", "Searched policies scored", "Exported policy", "Its test accuracy",
        *(f"Gain over {name}, {words}" for _, name in COMPARED
          for words in ("as the user ran it", "flip off")),
        "Wall time per stage", "Machine", "Results")


def proof_results(results_dir: Path = RESULTS_DIR) -> list[dict[str, Any]]:
    """The results JSON of every experiment that searched and validated, by name."""
    found = []
    for path in sorted(results_dir.glob("*.json")):
        if path.name.endswith((".policy.json", ".candidate.json", "-fidelity.json",
                               "-calibration.json")):
            continue
        raw = _read_json(path)
        if isinstance(raw, dict) and {"search", "validate", "stages_seconds"} <= raw.keys() \
                and isinstance(raw["search"], dict) and "searched" in raw["search"]:
            policy = path.with_name(path.name[:-len(".json")] + ".policy.json")
            raw["_policy"] = _read_json(policy) if policy.exists() else {}
            raw["_name"] = path.stem
            found.append(raw)
    return found


def _read_json(path: Path) -> Any:
    """A results file's JSON, or one line naming the damaged file."""
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"{path}: not a readable results file ({type(err).__name__}: "
                          f"{str(err)[:80]}); regenerate it with `make experiment` or remove "
                          "it") from None


def _gain(row: dict[str, Any] | None) -> str:
    if row is None or "gain" not in row:
        return "n/a"
    return (f"{100 * row['gain']:+.2f} (lower bound {100 * row['gain_lower']:+.2f}, "
            f"p {row['p_value']:.2g})")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def column(raw: dict[str, Any]) -> dict[str, str]:
    """One experiment's cells, keyed by the table's row names."""
    exp, search, val = raw["experiment"], raw["search"], raw["validate"]
    rows = {s["role"]: s for s in val["summary"]}
    same = {s["role"]: s for s in val.get("same", [])}
    policy = rows["policy"]
    base = raw["_policy"].get("base", {})
    # validation trains a baseline the exported policy is only once, as the policy
    is_policy = [s["role"] for s in val.get("same", []) if s["as"] == "policy"]
    if any("," not in role for role in is_policy):
        how = "a baseline: no searched policy beat it on the selection split"
    elif is_policy:  # a stock policy on the base the searched trials chose (the flip off)
        how = ("the stock policy on the base the searched trials chose: no searched op set "
               "beat it on the selection split")
    else:
        how = "a searched policy"
    searched = search["searched"]
    share = search.get("searched_share_of_stage")
    target = exp["target"]
    cells = {
        "Target training": f"{target['train_size']:,} images x {target['trainer']['epochs']} "
                           "epochs",
        "Searched policies scored": f"{searched['scored']}"
        + (f" ({100 * share:.0f} % of the search stage)" if share is not None else ""),
        "Exported policy": f"{policy['label']}{', flip kept' if base.get('flip') else ''} "
                           f"({how})",
        "Its test accuracy": f"{100 * policy['mean']:.2f} % +/- {100 * policy['std']:.2f} "
                             f"({policy['n']} seeds)",
    }
    for role, name in COMPARED:
        for suffix, words in (("", "as the user ran it"), (", flip off", "flip off")):
            key = f"Gain over {name}, {words}"
            twin = same.get(role + suffix, {}).get("as")  # trained once, as another entry
            if twin == "policy":
                cells[key] = "is the exported policy"
            elif twin in rows or role + suffix in rows:
                cells[key] = _gain(rows[twin or role + suffix])
    stages = raw["stages_seconds"]
    cells["Wall time per stage"] = ", ".join(f"{k} {_minutes(v)}" for k, v in stages.items())
    fid = raw.get("fidelity_summary") or {}
    if fid.get("reused") and fid.get("total_wall_seconds"):
        cells["Wall time per stage"] += (f" (fidelity reused saved runs; "
                                         f"{_minutes(fid['total_wall_seconds'])} in all)")
    m = raw["machine"]
    cells["Machine"] = f"{m['cpu']}, {m['cores']} cores, {m['accelerator']}"
    cells["Results"] = f"[{raw['_name']}.md](experiments/results/{raw['_name']}.md)"
    return cells


def render(results: list[dict[str, Any]]) -> str:
    """The Markdown table, one column an experiment; a row only where some column has it."""
    if not results:
        return "No proof experiment has results yet: run `make experiment EXPERIMENT=cifar10`."
    columns = []
    for r in results:
        try:
            columns.append(column(r))
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise ConfigError(f"{RESULTS_DIR / (r['_name'] + '.json')}: a results file with a "
                              f"missing or damaged field ({type(err).__name__}: {err}); "
                              "regenerate it with `make experiment` or remove it") from None
    names = [k for k in ROWS if any(k in c for c in columns)]
    head = "| | " + " | ".join(f"`{r['_name']}`" for r in results) + " |"
    lines = [head, "|---" * (len(results) + 1) + "|"]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(c.get(name, "not run") for c in columns)
                     + " |")
    return "\n".join(lines)


def update_readme(readme: Path = PROJECT_ROOT / "README.md",
                  results_dir: Path = RESULTS_DIR) -> bool:
    """Rewrite the part between the markers; True if the README changed."""
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise ValueError(f"{readme} has no '{BEGIN}' ... '{END}' markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{render(proof_results(results_dir))}\n{END}{tail}"
    if new != text:
        readme.write_text(new)
    return new != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", default=str(PROJECT_ROOT / "README.md"))
    parser.add_argument("--results", default=str(RESULTS_DIR), help="the results folder")
    args = parser.parse_args(argv)
    try:
        changed = update_readme(Path(args.readme), Path(args.results))
    except (ConfigError, ValueError, OSError) as err:
        print(f"make readme: {err}", file=sys.stderr)
        return 1
    print(f"{args.readme}: {'updated' if changed else 'already up to date'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
