"""Calibrate: the cheapest proxy that ranks policies as the target does, on the user's data.

The fidelity panel is trained at the target and at a short ladder of cheaper budgets, each named
relative to the target: ``images/4`` (a quarter of its images, the full schedule), ``epochs/2``
(half its epochs, the warmup and decay compressed into them), ``width/2`` (half the channels),
``side/2`` (the target's network on images of half the side; in the built-in ladder for images
of 64 px and more), combinations such as ``images/4+epochs/2``, and ``proxy`` (the experiment
file's own); ``evidence/ladder.py`` parses them. Rungs are trained cheapest first (estimated:
images x epochs x width x pixels fractions).

A rung is *faithful* when the Spearman correlation of its per-policy mean accuracies with the
target's, over the choosing seeds (1..n), is at least ``calibrate.bar`` (0.8) and it is cheaper
than the target (median seconds on one machine, else the estimate). The first faithful rung is
trained again, with the target, on fresh seeds (1001, 1002, ...) and picked only if it clears
the bar there too; else the ladder goes on. When no rung passes, the pick is the target itself.

Every finished (policy, budget, seed) run is saved at once in the calibration JSON, keyed by the
budget's stamp (``policysearch.config.calibration.budget_stamp``), so a run is trained once for
the whole ladder (the target's above all) and on resume; runs of ``policysearch fidelity`` for
the same experiment are reused too.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from policysearch.config.calibration import (
    calibration_path,
    proxy_stamp,
    target_stamp,
)
from policysearch.config.experiment import Experiment, with_overrides
from policysearch.evidence.fidelity import PanelEntry, analyse
from policysearch.evidence.fidelity_runs import save_json
from policysearch.evidence.ladder import (
    LADDER,
    SMALL_SIDE,
    Rung,
    build_ladder,
    parse_rung,
    rung_factors,
    target_rung,
)
from policysearch.evidence.runinfo import git_commit, machine
from policysearch.paths import write_atomic

CONFIRM_BASE = 1000
"""Confirmation seeds are 1001, 1002, ...: never the choosing seeds 1..n."""
__all__ = ["CONFIRM_BASE", "LADDER", "Rung", "build_ladder", "parse_rung", "run_calibration",
           "target_rung"]


# ----------------------------------------------------------------------------------------------
# Choosing


def judge(spearman: float, cost_ratio: float, bar: float) -> str:
    """A rung on the choosing seeds: ``faithful`` (to be confirmed), ``below the bar`` or
    ``not cheaper`` (its median run costs as much as the target's)."""
    if not math.isfinite(spearman) or spearman < bar:
        return "below the bar"
    if math.isfinite(cost_ratio) and cost_ratio >= 1.0:
        return "not cheaper"
    return "faithful"


def agreement(panel: Sequence[PanelEntry], runs: Sequence[dict[str, Any]], rung: Rung,
              target: Rung, seeds: Sequence[int]) -> dict[str, Any]:
    """fidelity's analysis of ``rung`` (as the proxy) against ``target`` at ``seeds``."""
    view = ([{**r, "budget": "proxy"} for r in runs if r["stamp"] == rung.stamp]
            + [{**r, "budget": "target"} for r in runs if r["stamp"] == target.stamp])
    return analyse(panel, view, seeds)


# ----------------------------------------------------------------------------------------------
# Runs


def import_fidelity_runs(path: Path, stamps: set[str]) -> list[dict[str, Any]]:
    """Runs a ``fidelity`` JSON holds at any of ``stamps`` (its proxy's or its target's)."""
    try:
        saved = json.loads(path.read_text())
        config = saved["experiment"]
        by_budget = {"proxy": proxy_stamp(config), "target": target_stamp(config)}
    except (OSError, ValueError, KeyError, TypeError):
        return []
    out = []
    for run in saved.get("runs", []):
        stamp = by_budget.get(run.get("budget")) if isinstance(run, dict) else None
        if stamp in stamps and "accuracy" in run:
            out.append({**{k: v for k, v in run.items() if k != "budget"}, "stamp": stamp,
                        "from": path.name})
    return out


class Runs:
    """The calibration's runs, saved after each one; reused on resume."""

    def __init__(self, path: Path, header: dict[str, Any], log: Callable[..., Any]) -> None:
        self.path, self.header, self.log = path, header, log
        self.runs: list[dict[str, Any]] = []
        self.invocations: list[dict[str, Any]] = []
        if path.exists():
            try:
                saved = json.loads(path.read_text())
                self.runs = [r for r in saved.get("runs", []) if isinstance(r, dict)
                             and {"stamp", "key", "seed", "accuracy"} <= r.keys()]
                self.invocations = list(saved.get("invocations", []))
            except (OSError, ValueError, AttributeError):
                log(f"calibrate: {path} is unreadable; starting afresh")
        self.trained = 0
        self.cpu = str(machine().get("cpu", "unknown"))  # seconds compare on one CPU only
        self.started = time.perf_counter()
        self.date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())

    def done(self) -> set[tuple[str, str, int]]:
        return {(r["stamp"], r["key"], int(r["seed"])) for r in self.runs}

    def add(self, new: Sequence[dict[str, Any]]) -> None:
        have = self.done()
        for run in new:
            if (run["stamp"], run["key"], int(run["seed"])) not in have:
                self.runs.append(run)
                have.add((run["stamp"], run["key"], int(run["seed"])))

    def history(self) -> list[dict[str, Any]]:
        return [*self.invocations, {"date": self.date, "trained": self.trained,
                                    "wall_seconds": time.perf_counter() - self.started,
                                    "commit": git_commit(), "cpu": self.cpu}]

    def save(self, **extra: Any) -> None:
        save_json(self.path, {**self.header, "invocations": self.history(), **extra,
                              "runs": self.runs})


def image_side(experiment: Experiment) -> int:
    """The side of the images as decoded (``data.image_size``, else the data's own)."""
    if experiment.data.image_size:
        return int(experiment.data.image_size)
    from policysearch.data.datasets import load_part

    return int(load_part(experiment.dataset, "train", experiment.data.data_dir).x.shape[1])


def pool_size(experiment: Experiment) -> int:
    """The images the target trains on (only read from the data when it says 'all')."""
    if experiment.target.train_size is not None:
        return int(experiment.target.train_size)
    from policysearch.data.datasets import load_part

    part = load_part(experiment.dataset, "train", experiment.data.data_dir,
                     experiment.data.image_size)
    return len(part.y) - experiment.data.val_size - experiment.data.selection_size


class Ladder:
    """Trains what is missing, one compiled trainer per budget."""

    def __init__(self, experiment: Experiment, panel: Sequence[PanelEntry], store: Runs,
                 log: Callable[..., Any]) -> None:
        self.experiment, self.panel, self.store, self.log = experiment, panel, store, log

    def ensure(self, rung: Rung, seeds: Sequence[int]) -> None:
        done = self.store.done()
        todo = [(e, s) for s in seeds for e in self.panel
                if (rung.stamp, e.policy.key(), int(s)) not in done]
        if not todo:
            return
        from policysearch.data.splits import load_splits
        from policysearch.training.trainer import TrainingDiverged, trainer_for

        if rung.name == "target":
            splits = load_splits(self.experiment)
            trainer, train = trainer_for(self.experiment, "target", splits), splits.target
        else:
            variant = with_overrides(self.experiment, {"data.train_size": rung.train_size,
                                                       "trainer": rung.trainer}, "calibrate")
            splits = load_splits(variant)
            trainer, train = trainer_for(variant, "proxy", splits), splits.proxy
        self.log(f"calibrate: {rung.name}: {rung.describe()}; {len(todo)} runs to train")
        for i, (entry, seed) in enumerate(todo, 1):
            record = {"policy": entry.name, "key": entry.policy.key(), "stamp": rung.stamp,
                      "rung": rung.name, "seed": int(seed), "cpu": self.store.cpu}
            try:
                result = trainer.train(entry.policy, train, splits.val, int(seed))
                record.update(accuracy=result.final_accuracy, seconds=result.seconds,
                              curve=dict(zip(result.val_epochs, result.val_accuracy)))
            except TrainingDiverged as err:  # a real outcome: chance accuracy
                record.update(accuracy=1.0 / len(splits.classes), seconds=math.nan,
                              diverged=str(err))
            self.store.runs.append(record)
            self.store.trained += 1
            self.store.save()
            self.log(f"calibrate: [{i}/{len(todo)}] {rung.name:>18} {entry.name:>20} seed "
                     f"{seed}: {100 * record['accuracy']:.1f} % ({record['seconds']:.0f} s)")


def run_ladder(experiment: Experiment, panel: Sequence[PanelEntry], seeds: Sequence[int],
               confirm_seeds: Sequence[int], rungs: Sequence[Rung], store: Runs, bar: float,
               log: Callable[..., Any]) -> dict[str, Any]:
    """Train and judge the rungs cheapest first; stop at the first one confirmed.

    Each confirmation uses seeds no choice has seen: the first faithful rung is confirmed on
    ``confirm_seeds``, and when it fails, the next faithful rung on the next fresh set
    (``confirm_seeds`` shifted by their count), so confirmation seeds only ever confirm one pick
    and never help reject a rung on the way to another."""
    target = target_rung(experiment.to_dict())
    ladder = Ladder(experiment, panel, store, log)
    ladder.ensure(target, seeds)
    rows: list[dict[str, Any]] = []
    picked: Rung | None = None
    attempts = 0
    used = list(confirm_seeds)
    for rung in rungs:
        row = {"rung": rung.name, "budget": rung.describe(), "estimate": rung.estimate,
               "stamp": rung.stamp}
        rows.append(row)
        if picked is not None:
            row["status"] = "not trained: a cheaper rung was picked"
            continue
        ladder.ensure(rung, seeds)
        a = agreement(panel, store.runs, rung, target, seeds)
        cost = a["cost_ratio_median"]  # NaN when not timed on one machine (study.cost)
        row.update(spearman=a["spearman"], interval=a["spearman_interval"], cost_ratio=cost,
                   seconds=a["median_seconds_per_run"],
                   status=judge(a["spearman"], cost if math.isfinite(cost) else rung.estimate,
                                bar))
        if row["status"] == "faithful":
            used = [s + attempts * len(confirm_seeds) for s in confirm_seeds]
            attempts += 1
            ladder.ensure(target, used)
            ladder.ensure(rung, used)
            c = agreement(panel, store.runs, rung, target, used)
            row.update(confirm_spearman=c["spearman"], confirm_interval=c["spearman_interval"],
                       confirm_seeds=used)
            if c["spearman"] >= bar:
                row["status"], picked = "picked", rung
            else:
                row["status"] = "not confirmed"
    a = agreement(panel, store.runs, target, target, seeds)
    rows.append({"rung": "target", "budget": target.describe(), "estimate": 1.0,
                 "stamp": target.stamp, "spearman": 1.0, "cost_ratio": 1.0,
                 "seconds": a["median_seconds_per_run"],
                 "status": "the reference" if picked else "picked: nothing cheaper is faithful"})
    chosen = picked or target
    return {"rows": rows, "picked": chosen, "target": target, "bar": bar,
            "seeds": list(seeds), "confirm_seeds": used,
            "best": max((r for r in rows if r["rung"] != "target" and "spearman" in r),
                        key=lambda r: r["spearman"], default=None)}


# ----------------------------------------------------------------------------------------------
# The command


def run_calibration(experiment: Experiment, panel: Sequence[PanelEntry], seeds: Sequence[int],
                    out: Path, *, ladder: Sequence[str] | None = None, bar: float | None = None,
                    confirm: int | None = None, command: str = "",
                    log: Callable[..., Any] = print) -> dict[str, Any]:
    """Calibrate ``experiment``'s proxy; write ``out`` (the YAML the search reads) and its
    ``.md`` and ``.json`` beside it. ``experiment`` is the file as written (no calibration)."""
    from policysearch.evidence.calibrate_report import render_markdown, render_yaml, table

    config = experiment.to_dict()
    bar = experiment.calibrate.bar if bar is None else float(bar)
    confirm = confirm or experiment.calibrate.confirm_seeds
    seeds = [int(s) for s in seeds]
    confirm_seeds = [CONFIRM_BASE + i for i in range(1, confirm + 1)]
    given = list(ladder or experiment.calibrate.ladder)
    for spec in given:
        rung_factors(spec)  # a bad rung is refused before the data is read
    side = image_side(experiment)
    specs = given or list(LADDER + (("side/2",) if side >= SMALL_SIDE else ()))
    rungs = build_ladder(specs, config, pool_size(experiment), side)
    target = target_rung(config)
    header = {"experiment": config, "panel": [e.name for e in panel], "ladder": specs}
    store = Runs(out.with_suffix(".json"), header, log)
    tag = out.name.removesuffix("-calibration.yaml")
    fidelity_json = out.with_name(f"{tag}-fidelity.json")
    before = len(store.runs)
    store.add(import_fidelity_runs(fidelity_json, {target.stamp, *(r.stamp for r in rungs)}))
    reused = len(store.runs) - before
    log(f"calibrate: {experiment.name}: {len(panel)} policies; target {target.describe()}; "
        f"ladder {', '.join(r.name for r in rungs) or '(empty)'}; bar Spearman >= {bar:.2f} on "
        f"seeds {_span(seeds)}, confirmed on fresh seeds {_span(confirm_seeds)}; "
        f"{len(store.runs)} finished runs saved"
        + (f" ({reused} from {fidelity_json.name})" if reused else ""))
    result = run_ladder(experiment, panel, seeds, confirm_seeds, rungs, store, bar, log)
    result["panel"] = [e.name for e in panel]
    history = store.history()
    meta = {"command": command, "date": store.date, "commit": git_commit(),
            "trained_now": store.trained, "invocations": history,
            "wall_seconds": history[-1]["wall_seconds"]}
    yaml_text = render_yaml(experiment, result, meta)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, yaml_text)
    summary = {k: v for k, v in result.items() if k not in ("picked", "target")}
    summary["picked"] = result["picked"].name
    store.save(analysis=summary, **{k: v for k, v in meta.items() if k != "invocations"})
    write_atomic(out.with_suffix(".md"), render_markdown(experiment, result, meta, out))
    for line in table(result):
        log(line)
    picked = result["picked"]
    if picked.name == "target":
        best = result["best"]
        why = (f"best: {best['rung']}, Spearman {best['spearman']:+.2f}, {best['status']}"
               if best else "no cheaper rung")
        log(f"calibrate: nothing cheaper is faithful ({why}); the search runs at the target "
            f"budget ({picked.describe()})")
    else:
        row = next(r for r in result["rows"] if r["rung"] == picked.name)
        log(f"calibrate: picked {picked.name} ({picked.describe()}): Spearman "
            f"{row['spearman']:+.2f} on seeds {_span(seeds)}, {row['confirm_spearman']:+.2f} on "
            f"the confirmation seeds {_span(row['confirm_seeds'])}, "
            + (f"at {row['cost_ratio']:.2f} of a target run (median seconds)"
               if math.isfinite(row["cost_ratio"]) else f"at about {picked.estimate:.2f} of a "
               "target run (estimated: its runs and the target's ran on different machines)"))
    used = any(out.resolve() == calibration_path(experiment.name, s).resolve()
               for s in (False, True))
    log(f"calibrate: trained {store.trained} runs now; wrote {out}"
        + (" (the search trains its proxy while the target stays this one)" if used else "")
        + f", {out.with_suffix('.md').name} and {out.with_suffix('.json').name}")
    return result


def _span(seeds: Sequence[int]) -> str:
    seeds = list(seeds)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))
