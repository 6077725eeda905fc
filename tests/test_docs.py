"""The docs cannot drift: every experiment key and command-line flag they name exists.

Keys and flags are read from the code (the ``Experiment`` dataclasses and ``build_parser``), so a
key or flag added on any branch is known here without a list to keep. What counts as a name in
the docs: a backticked span that is a dotted key (```race.top_k```, ```race.budget: proxy```),
a backticked flag (```--top-k```, ```--placement data|model```), and a ``policysearch``
command (backticked, or a line of a fenced block), whose flags must belong to its subcommand.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import shlex
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest

from policysearch.cli.args import build_parser
from policysearch.config.experiment import Experiment

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# A dotted span that is not a key: a file name, or a name in a library's or MLflow's namespace.
FILE_SUFFIXES = {"py", "json", "csv", "png", "jpg", "yaml", "yml", "md", "gz", "tgz", "tar",
                 "toml", "db", "sh", "txt", "npz", "html"}
NOT_KEYS = {"policysearch", "keras", "tf", "torch", "torchvision", "mlflow", "optuna", "np",
            "timm"}
KEY = re.compile(r"(?P<key>[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+)(?:\s*[:=].*)?")
FLAG = re.compile(r"(?<![\w-])--(?P<flag>[a-z][a-z0-9-]*)")
SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
FENCE = re.compile(r"^```.*?$(?P<body>.*?)^```", re.M | re.S)


def schema_keys(cls: type = Experiment, prefix: str = "") -> set[str]:
    """Every dotted key of the experiment schema, sections included (``trainer.model``)."""
    keys: set[str] = set()
    hints = typing.get_type_hints(cls)
    for spec in dataclasses.fields(cls):
        if spec.metadata.get("internal"):
            continue
        key = f"{prefix}{spec.name}"
        keys.add(key)
        if dataclasses.is_dataclass(hints[spec.name]):
            keys |= schema_keys(hints[spec.name], f"{key}.")
    return keys


def known_keys() -> set[str]:
    """Full keys, the same keys below a section (``model.widths`` inside ``trainer``), and
    keys under ``smoke.`` (the overrides ``--smoke`` applies)."""
    full = schema_keys()
    known = set(full)
    for key in full:
        parts = key.split(".")
        known |= {".".join(parts[i:]) for i in range(1, len(parts))}
    return known | {f"smoke.{key}" for key in full}


def parsers() -> tuple[dict[str, set[str]], set[str]]:
    """Each subcommand's flags, and the top-level ones (``--version``, and ``make bench``'s, whose
    program is ``python -m policysearch.evidence.bench``)."""
    from policysearch.evidence.bench import build_parser as bench_parser

    parser = build_parser()
    top = {s for a in parser._actions for s in a.option_strings}
    top |= set(bench_parser()._option_string_actions)
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {name: set(p._option_string_actions) for name, p in sub.choices.items()}, top


def spans(text: str) -> Iterator[tuple[int, str, bool]]:
    """(line, text, whole line of a fenced block?) for inline code and fenced-block lines."""
    fenced = [(m.start("body"), m.end("body")) for m in FENCE.finditer(text)]
    for start, end in fenced:
        first = text.count("\n", 0, start) + 1
        for offset, line in enumerate(text[start:end].strip("\n").splitlines()):
            yield first + offset, line, True
    for match in SPAN.finditer(text):
        if not any(start <= match.start() < end for start, end in fenced):
            yield text.count("\n", 0, match.start()) + 1, match.group(1), False


def command(text: str, subcommands: set[str]) -> str | None:
    """The subcommand a ``policysearch ...`` command (or a span starting with a subcommand)
    runs; None for anything else."""
    try:
        words = shlex.split(text.lstrip("$ "), comments=True)
    except ValueError:
        words = text.lstrip("$ ").split()
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):  # VAR=value prefixes
        words.pop(0)
    if words[:2] == ["python", "-m"] and words[2:3] == ["policysearch"]:
        words = words[2:]
    if words and Path(words[0]).name == "policysearch":
        words = words[1:]
    return words[0] if words and words[0] in subcommands else None


def problems(name: str, page: str) -> list[str]:
    """What the markdown ``page`` (called ``name``) names that the code does not have."""
    keys = known_keys()
    flags, top = parsers()
    every_flag = top.union(*flags.values())
    found = []
    for line, text, fenced in spans(page):
        sub = command(text, set(flags))
        if sub is not None:
            allowed = top | flags[sub]
            found += [f"{name}:{line}: `{text}`: policysearch {sub} has no --{m['flag']}"
                      for m in FLAG.finditer(text) if f"--{m['flag']}" not in allowed]
        elif not fenced and text.startswith("--"):
            found += [f"{name}:{line}: `{text}`: no command has --{m['flag']}"
                      for m in FLAG.finditer(text) if f"--{m['flag']}" not in every_flag]
        match = KEY.fullmatch(text.strip())
        if not fenced and match:
            key = match["key"]
            parts = key.split(".")
            if parts[-1] in FILE_SUFFIXES or parts[0] in NOT_KEYS or key in keys:
                continue
            found.append(f"{name}:{line}: `{text}`: no experiment key {key}")
    return found


def test_the_names_are_read_from_the_code() -> None:
    keys = known_keys()
    assert {"race.top_k", "data.selection_size", "target.trainer.model.name", "model.widths",
            "smoke.search.trials"} <= keys
    assert "reevaluate.top_k" not in keys
    flags, top = parsers()
    assert "--top-k" in flags["search"] and "--top-k" not in flags["validate"]
    assert "--version" in top


def test_the_checker_finds_stale_names() -> None:
    page = ("Set `reevaluate.top_k` and `race.top_k: 2`, pass `--reeval-seeds` or `--top-k`;\n"
            "see `trials.csv`, `keras.ops`, `policysearch validate P --top-k 2`.\n"
            "```sh\npolicysearch search --dataset d --bogus 1\nmlflow server --port 5\n```\n")
    found = [p.split(": ", 1)[1] for p in problems("stale.md", page)]
    assert found == ["`policysearch search --dataset d --bogus 1`: policysearch search has no "
                     "--bogus",
                     "`reevaluate.top_k`: no experiment key reevaluate.top_k",
                     "`--reeval-seeds`: no command has --reeval-seeds",
                     "`policysearch validate P --top-k 2`: policysearch validate has no --top-k"]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_key_and_flag_in_the_docs_exists(path: Path) -> None:
    found = problems(path.relative_to(ROOT).as_posix(), path.read_text())
    assert not found, "\n".join(found)


def test_the_readme_layout_names_every_room() -> None:
    """README's Layout lists each folder of ``policysearch/`` (the rooms of LAYERS)."""
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("### Layout"):]
    rooms = sorted(p.parent.name for p in (ROOT / "policysearch").glob("*/__init__.py"))
    assert rooms and not [room for room in rooms if f"`{room}/`" not in layout], rooms


def test_the_readme_results_are_the_committed_results() -> None:
    """README's "Does it work?" table is what the committed results JSON says (``make
    readme`` regenerates it; nobody types a figure)."""
    from policysearch.search.side_by_side import BEGIN, END, proof_results, render

    readme = (ROOT / "README.md").read_text()
    section = readme.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    results = proof_results()
    assert {r["_name"] for r in results} >= {"cifar10", "mnist"}
    assert section == render(results).strip(), "run `make readme`"


def test_the_side_by_side_names_what_validation_trained_once(tmp_path: Path) -> None:
    """A stock policy the exported one is reads "is the exported policy", not a zero gain; a
    comparison no experiment ran has no row."""
    import json

    from policysearch.search.side_by_side import proof_results, render

    gain = {"gain": 0.02, "gain_lower": 0.01, "gain_upper": 0.03, "p_value": 0.004, "n": 5}
    raw = {
        "experiment": {"target": {"train_size": 500, "trainer": {"epochs": 100}}},
        "search": {"searched": {"scored": 7}, "searched_share_of_stage": 0.5},
        "validate": {"summary": [
            {"role": "policy", "label": "TA", "mean": 0.9, "std": 0.01, "n": 5},
            {"role": "crop_flip", "label": "crop+flip", "mean": 0.88, "std": 0.01, **gain}],
            "same": [{"role": "trivialaugment", "label": "TA", "as": "policy"}]},
        "stages_seconds": {"search": 600.0},
        "machine": {"cpu": "a CPU", "cores": 2, "accelerator": "none"},
    }
    (tmp_path / "demo.json").write_text(json.dumps(raw))
    (tmp_path / "demo.policy.json").write_text(json.dumps({"base": {"flip": False}}))
    (tmp_path / "demo-fidelity.json").write_text("{}")  # not a proof result: skipped
    table = render(proof_results(tmp_path))
    assert "| Gain over TrivialAugment, as the user ran it | is the exported policy |" in table
    assert "| Gain over crop+flip, as the user ran it | +2.00 (lower bound +1.00, p 0.004) |" \
        in table
    assert "Gain over RandAugment" not in table
    assert "| Exported policy | TA (a baseline: no searched" in table
    assert "| Searched policies scored | 7 (50 %" in table
