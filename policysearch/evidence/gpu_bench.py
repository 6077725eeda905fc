"""``make bench-gpu``: the GPU benchmark, one prepared script (a lent device's time is short).

Each part is timed on the device the report's first line names; on a machine without a GPU the
same script runs on the CPU (the test suite runs it at a tiny budget, so it is ready):

1. **Epoch time**: the proxy CNN over ``--images`` CIFAR-10 training images (50,000 on a GPU),
   crop+flip against crop+flip + RA(2,9), interleaved over ``--rounds`` paired rounds: the ratio
   of median seconds per epoch and a 95 % interval of the per-round ratio (goal: 1.1 at most).
2. **Compile share**: the first run of a fresh trainer (trace and compile) against a warm one,
   as a share of the wall time of a search of ``--trials`` policies (goal: 10 % at most).
3. **Concurrent trials**: ``K`` trial processes started together (``--concurrency``, default
   1, 2, 4, 8), each training ``--runs`` trials at ``--experiment``'s proxy budget (a search's
   trial): trials per minute for each ``K`` (GPU memory grows as needed in each process,
   ``TF_FORCE_GPU_ALLOW_GROWTH``).
4. **A 100-policy search**, projected from part 3's best throughput and part 2's compile time
   (baselines + ``--trials`` trials), labelled as a projection.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")


def _data(images: int, data_dir: str | None) -> Any:
    import numpy as np

    from policysearch.data.datasets import load_part
    from policysearch.data.splits import Split, stratified

    part = load_part("cifar10", "train", data_dir)
    pick = np.sort(stratified(part.y, np.arange(len(part.y)), min(images, len(part.y)),
                              np.random.default_rng(0)))
    val = pick[: min(512, len(pick))]
    return Split(part.x[pick], part.y[pick]), Split(part.x[val], part.y[val])


def _trainer(train: Any, epochs: int) -> Any:
    from policysearch.config.experiment import BaseAugmentConfig, TrainerConfig
    from policysearch.training.trainer import Trainer

    cfg = TrainerConfig(epochs=epochs, batch_size=256, validate_every=epochs, placement="auto")
    return Trainer(cfg, BaseAugmentConfig(crop_padding=4, flip=True), train.x.shape[1:], 10,
                   len(train))


def epoch_part(train: Any, val: Any, epochs: int, rounds: int) -> dict[str, Any]:
    """Parts 1 and 2: paired epoch times, and the first (compiling) run against a warm one."""
    from scipy import stats

    from policysearch.policy.definition import no_augment, randaugment

    started = time.perf_counter()
    trainer = _trainer(train, epochs)
    first = trainer.train(no_augment(), train, val, 0).seconds
    build = time.perf_counter() - started
    plain, ra = [], []
    for r in range(rounds):
        order = [("plain", no_augment()), ("ra", randaugment(2, 9))]
        for name, policy in order if r % 2 == 0 else order[::-1]:
            seconds = trainer.train(policy, train, val, 1 + r).seconds / epochs
            (plain if name == "plain" else ra).append(seconds)
    ratios = [b / a for a, b in zip(plain, ra)]
    mean = statistics.fmean(ratios)
    half = (stats.t.ppf(0.975, len(ratios) - 1) * statistics.stdev(ratios)
            / math.sqrt(len(ratios))) if len(ratios) > 1 else math.nan
    warm = statistics.median(plain) * epochs
    return {"epoch_plain": statistics.median(plain), "epoch_ra": statistics.median(ra),
            "ratio_medians": statistics.median(ra) / statistics.median(plain),
            "ratio_interval": [mean - half, mean + half], "rounds": rounds,
            "placement": trainer.placement, "first_run": first, "build_and_first": build,
            "warm_run": warm, "compile": max(0.0, build - warm)}


def concurrency_part(levels: list[int], experiment: str, trials: int, epochs: int | None,
                     data_dir: str | None) -> list[dict[str, Any]]:
    """Part 3: ``K`` trial processes at once (``evidence/concurrency.py``, as ``make bench
    ONLY=concurrency`` measures them on a CPU), each ``trials`` trials at ``experiment``'s proxy
    budget after a warm-up."""
    from policysearch.evidence.concurrency import measure

    rows = []
    for k in levels:
        try:
            r = measure(experiment, data_dir, k, trials, epochs)
        except RuntimeError as err:
            rows.append({"workers": k, "error": str(err)})
            continue
        rows.append({"workers": k, "runs": r["trials"], "wall": r["span"],
                     "runs_per_minute": r["per_hour"] / 60})
    return rows


def report(device: str, images: int, epochs: int, trials: int, baselines: int,
           epoch: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    from policysearch.evidence.runinfo import git_commit, machine

    m = machine()
    ok = [r for r in rows if "runs_per_minute" in r]
    best = max(ok, key=lambda r: r["runs_per_minute"], default=None)
    lines = [f"# GPU benchmark ({device})", "",
             f"Generated by `make bench-gpu` on {m['cpu']} ({m['cores']} cores), accelerator "
             f"{m['accelerator']}, code `{git_commit()}`; the proxy CNN (16/32/64), batch 256, "
             f"{images} CIFAR-10 images x {epochs} epochs per run, augmentation placement "
             f"`{epoch['placement']}`.", "",
             "| measure | value | goal |", "|---|---|---|",
             f"| epoch, crop+flip | {epoch['epoch_plain']:.3f} s | |",
             f"| epoch, crop+flip + RA(2,9) | {epoch['epoch_ra']:.3f} s | |",
             f"| RA(2,9) / crop+flip (medians; 95 % interval of the paired ratio over "
             f"{epoch['rounds']} rounds) | {epoch['ratio_medians']:.2f}x "
             f"[{epoch['ratio_interval'][0]:.2f}, {epoch['ratio_interval'][1]:.2f}] | "
             "1.1x at most |",
             f"| first run of a fresh trainer (build, trace, compile) | "
             f"{epoch['build_and_first']:.1f} s against {epoch['warm_run']:.1f} s warm | |"]
    search = None
    if best:
        per_run = 60 / best["runs_per_minute"]
        search = epoch["compile"] + (baselines + trials) * per_run
        share = epoch["compile"] / search if search else math.nan
        lines.append(f"| compile as a share of a {trials}-policy search | {100 * share:.1f} % | "
                     "10 % at most |")
    for r in rows:
        value = (f"{r['runs_per_minute']:.1f} trials/min ({r['runs']} trials in "
                 f"{r['wall']:.0f} s)"
                 if "runs_per_minute" in r else f"failed: {r['error']}")
        lines.append(f"| {r['workers']} concurrent trial process(es) | {value} | |")
    if search is not None:
        lines.append(f"| a {trials}-policy search (+{baselines} baselines), projected from "
                     f"{best['workers']} processes | {search / 60:.1f} min | 5 min at most on "
                     "one H100 |")
    return "\n".join([*lines, ""])


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--runs", type=int, default=4, help="trials per process (part 3)")
    parser.add_argument("--experiment", default="cifar10", help="whose proxy a trial trains")
    parser.add_argument("--trial-epochs", type=int, help="a trial's epochs (default: the "
                        "proxy's)")
    parser.add_argument("--concurrency", default="1,2,4,8")
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--data-dir", default=os.environ.get("POLICYSEARCH_DATA_DIR"))
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if min(args.images, args.epochs, args.rounds, args.runs) < 1:
        parser.error("--images, --epochs, --rounds and --runs must be at least 1")
    from policysearch.training.device import resolve

    device = resolve(allow_cpu=True).line
    print(device, flush=True)
    train, val = _data(args.images, args.data_dir)
    epoch = epoch_part(train, val, args.epochs, args.rounds)
    levels = [int(k) for k in args.concurrency.split(",") if k.strip()]
    rows = concurrency_part(levels, args.experiment, args.runs, args.trial_epochs, args.data_dir)
    text = report(device.removeprefix("device: "), args.images, args.epochs, args.trials, 3,
                  epoch, rows)
    print(text)
    if args.out:
        from pathlib import Path

        from policysearch.paths import write_atomic

        write_atomic(Path(args.out), text)
    return text


if __name__ == "__main__":
    main()
