"""``make bench``: what augmentation costs, measured on this machine.

1. Per-op cost: every op applied to a 1024-image batch in one compiled call (the backend's
   jit where it has one), milliseconds per batch.
2. tf.data throughput (TensorFlow, CPU): images/s of a map that applies our layer versus stock
   ``keras.layers.RandAugment``, at N = 2 and 3.
3. Proxy epoch time with and without augmentation (the trainer that scores trials).
4. Whole runs, crop+flip against RA(2,9), interleaved (ABBA, paired seeds) at an experiment's
   target budget: median, min, max and interquartile range of the wall seconds, the ratio on
   medians, and per run the process CPU seconds, the machine's steal time and the involuntary
   context switches, which tell a slow run of the code's making (more CPU work) from one of
   the machine's (the same work, less CPU given to it). ``--only runs`` runs this part alone.

Prints a Markdown report (the machine named); ``--out`` also writes it to a file. Skips what
the installed backends cannot run (e.g. part 2 without TensorFlow).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from policysearch.evidence.stats import paired_ratio

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _timeit(fn: Any, repeats: int) -> float:
    fn()  # compile / warm up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def per_op(images: Any, repeats: int) -> list[tuple[str, float]]:
    import keras
    import numpy as np

    from policysearch.augment import apply_op
    from policysearch.augment.ops import OP_NAMES

    backend = keras.backend.backend()
    x = keras.ops.convert_to_tensor(images)
    rows = []
    for name in OP_NAMES:
        def call(x: Any, name: str = name) -> Any:
            return apply_op(x, name, 15.0)

        if backend == "jax":
            import jax

            jitted = jax.jit(call)
            fn = lambda f=jitted: f(x).block_until_ready()  # noqa: E731
        elif backend == "tensorflow":
            import tensorflow as tf

            tf.get_logger().setLevel("ERROR")  # one tf.function per op is intended
            compiled = tf.function(call)
            fn = lambda f=compiled: f(x).numpy()  # noqa: E731
        else:
            fn = lambda: np.asarray(call(x))  # noqa: E731
        rows.append((name, 1000 * _timeit(fn, repeats)))
    return rows


def tfdata_throughput(images: Any, batch: int, num_ops: int, seconds: float) -> dict[str, float]:
    import keras
    import tensorflow as tf

    from policysearch.policy.definition import randaugment
    from policysearch.policy.layer import PolicyAugmentation

    ours = PolicyAugmentation(randaugment(num_ops, 9), seed=0)
    stock = keras.layers.RandAugment(value_range=(0, 255), num_ops=num_ops, factor=0.3,
                                     seed=0)
    out = {}
    for name, layer in (("policysearch", ours), ("keras.layers.RandAugment", stock)):
        ds = (tf.data.Dataset.from_tensor_slices(images).repeat().batch(batch)
              .map(lambda x, layer=layer: layer(x, training=True),
                   num_parallel_calls=tf.data.AUTOTUNE).prefetch(2))
        it = iter(ds)
        next(it)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            next(it)
            count += batch
        out[name] = count / (time.perf_counter() - start)
    return out


def epoch_times(x: Any, y: Any, epochs: int) -> dict[str, float]:
    from policysearch.config.experiment import BaseAugmentConfig, TrainerConfig
    from policysearch.data.splits import Split
    from policysearch.policy.definition import no_augment, randaugment
    from policysearch.training.trainer import Trainer

    cfg = TrainerConfig(epochs=epochs, batch_size=256, validate_every=epochs)
    trainer = Trainer(cfg, BaseAugmentConfig(crop_padding=4, flip=True), x.shape[1:], 10, len(x))
    out = {}
    train, val = Split(x, y), Split(x[:512], y[:512])
    trainer.train(no_augment(), train, val, 0)  # compile
    for label, policy in (("crop+flip", no_augment()), ("crop+flip + RA(N=2,M=9)",
                                                         randaugment(2, 9))):
        result = trainer.train(policy, train, val, 1)
        out[label] = result.seconds / epochs
    out["placement"] = trainer.placement  # type: ignore[assignment]
    return out


def _steal_seconds() -> float:
    """The machine's steal time so far (``/proc/stat``), seconds; NaN where unknown."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def _search_threads() -> None:
    """TensorFlow's pools as one search worker sets them (search.worker.configure_threads)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(os.cpu_count() or 1)
        tf.config.threading.set_inter_op_parallelism_threads(2)
    except RuntimeError:
        pass  # already initialised


def run_times(experiment_name: str, data_dir: str | None, runs: int,
              epochs: int | None) -> list[dict[str, Any]]:
    """``runs`` rounds of crop+flip and RA(2,9) at the experiment's target budget, interleaved
    (A B, then B A), the same seed within a round (paired); the search's thread settings."""
    import resource

    from policysearch.config.experiment import load_experiment
    from policysearch.data.splits import load_splits
    from policysearch.policy.definition import no_augment, randaugment
    from policysearch.training.trainer import trainer_for

    _search_threads()
    experiment = load_experiment(experiment_name, overrides={
        "data.data_dir": data_dir, "target.trainer.epochs": epochs,
        "target.trainer.validate_every": epochs})
    splits = load_splits(experiment)
    trainer = trainer_for(experiment, "target", splits)
    trainer.train(no_augment(), splits.target, splits.val, 0)  # compile, warm up
    pair = [("crop+flip", no_augment()), ("RA(2,9)", randaugment(2, 9))]
    out = []
    for i in range(runs):
        for label, policy in (pair if i % 2 == 0 else pair[::-1]):
            before, steal = resource.getrusage(resource.RUSAGE_SELF), _steal_seconds()
            result = trainer.train(policy, splits.target, splits.val, 1 + i)
            after = resource.getrusage(resource.RUSAGE_SELF)
            out.append({"round": i + 1, "policy": label, "seconds": result.seconds,
                        "cpu": (after.ru_utime + after.ru_stime
                                - before.ru_utime - before.ru_stime),
                        "steal": _steal_seconds() - steal,
                        "switches": after.ru_nivcsw - before.ru_nivcsw,
                        "load": os.getloadavg()[0], "rss_mb": after.ru_maxrss / 1024})
            r = out[-1]
            print(f"bench: round {i + 1}/{runs} {label:>9}: {r['seconds']:.1f} s wall, "
                  f"{r['cpu']:.1f} s CPU, steal {r['steal']:.1f} s, load {r['load']:.1f}",
                  flush=True)
    return out


RATIO_WIDTH = 0.1
"""The widest interval a ratio may be quoted with (issue 36): wider, the report says how many
rounds would narrow it."""


def _pairs(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """RA(2,9)'s and crop+flip's ``key`` in the rounds that ran both."""
    by_round: dict[int, dict[str, float]] = {}
    for r in rows:
        by_round.setdefault(r["round"], {})[r["policy"]] = r[key]
    both = [v for v in by_round.values() if {"RA(2,9)", "crop+flip"} <= set(v)]
    return [v["RA(2,9)"] for v in both], [v["crop+flip"] for v in both]


def runs_report(rows: list[dict[str, Any]], title: str) -> list[str]:
    import numpy as np

    lines = [f"## Whole runs, interleaved: {title}", "",
             "| policy | runs | median s | min | max | IQR | median CPU s | CPU/wall |",
             "|---|---|---|---|---|---|---|---|"]
    medians, cpu_medians = {}, {}
    for label in dict.fromkeys(r["policy"] for r in rows):
        wall = np.array([r["seconds"] for r in rows if r["policy"] == label])
        cpu = np.array([r["cpu"] for r in rows if r["policy"] == label])
        q1, q3 = np.percentile(wall, [25, 75])
        medians[label] = float(np.median(wall))
        cpu_medians[label] = float(np.median(cpu))
        lines.append(f"| {label} | {len(wall)} | {np.median(wall):.1f} | {wall.min():.1f} | "
                     f"{wall.max():.1f} | {q3 - q1:.1f} | {np.median(cpu):.1f} | "
                     f"{np.median(cpu / wall):.2f} |")
    a, b = medians.get("RA(2,9)"), medians.get("crop+flip")
    if a and b:
        wall_ratio, cpu_ratio = (paired_ratio(*_pairs(rows, key)) for key in ("seconds", "cpu"))
        lines += ["", f"RA(2,9) / crop+flip, paired by round (the geometric mean of the "
                  f"rounds' ratios): wall seconds **{wall_ratio.describe()}**; CPU seconds "
                  f"(the work, whatever else runs on the machine) {cpu_ratio.describe()}. "
                  f"On medians: {a / b:.2f}x wall, "
                  f"{cpu_medians['RA(2,9)'] / cpu_medians['crop+flip']:.2f}x CPU."]
        for name, r in (("wall", wall_ratio), ("CPU", cpu_ratio)):
            if not r.width <= RATIO_WIDTH:
                lines.append(f"The {name} interval is wider than {RATIO_WIDTH}: about "
                             f"{r.pairs_for(RATIO_WIDTH)} rounds at this noise would narrow it "
                             f"(`make bench ONLY=runs RUNS=...`).")
    lines += ["", "| round | policy | wall s | CPU s | steal s | involuntary switches | load |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['round']} | {r['policy']} | {r['seconds']:.1f} | {r['cpu']:.1f} | "
              f"{r['steal']:.1f} | {r['switches']} | {r['load']:.1f} |" for r in rows]
    return lines


def trial_breakdown(experiment_name: str, data_dir: str | None, runs: int,
                    study: str | None) -> list[str]:
    """Where a trial's seconds go at the experiment's proxy budget, as a search worker runs it
    (issue 36): the data, the trainer's build and compile (once a process), the first run's
    trace, then per run the weights' reset, the training steps and the validations; with
    ``study`` (``STORAGE@NAME``), the bookkeeping around each of its finished trials (Optuna
    and MLflow writes: a trial's wall time less its training seconds)."""
    import statistics

    from policysearch.config.experiment import load_experiment
    from policysearch.data.splits import load_splits
    from policysearch.policy.definition import no_augment, randaugment
    from policysearch.training.trainer import trainer_for

    _search_threads()
    exp = load_experiment(experiment_name, overrides={"data.data_dir": data_dir})
    clock = time.perf_counter()
    splits = load_splits(exp)
    data = time.perf_counter() - clock
    clock = time.perf_counter()
    trainer = trainer_for(exp, "proxy", splits)
    build = time.perf_counter() - clock
    clock = time.perf_counter()
    trainer.train(no_augment(), splits.proxy, splits.val, 0)
    first = time.perf_counter() - clock
    rows = []
    for seed in range(1, runs + 1):
        clock = time.perf_counter()
        trainer._reset(seed)  # what every run starts with, timed alone
        reset = time.perf_counter() - clock
        clock = time.perf_counter()
        result = trainer.train(randaugment(2, 9), splits.proxy, splits.val, seed)
        total = time.perf_counter() - clock
        clock = time.perf_counter()
        trainer.evaluate(splits.val)
        validation = time.perf_counter() - clock
        rows.append({"total": total, "fit": result.seconds, "reset": reset,
                     "validations": validation * len(result.val_epochs)})
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    b = exp.proxy_budget
    lines = [f"## Where a trial's seconds go: {experiment_name}'s proxy, {len(splits.proxy)} "
             f"images x {b.trainer.epochs} epochs, RA(2,9), {runs} runs (median)", "",
             "| part | seconds | when |", "|---|---|---|",
             f"| load and carve the data (decoded cache) | {data:.1f} | once a process |",
             f"| build and compile the trainer | {build:.1f} | once a process |",
             f"| first run (pipeline built, augmentation traced) | {first:.1f} | once a process |",
             f"| a run: fresh weights and optimizer (`_reset`) | {med['reset']:.2f} | each trial |",
             f"| a run: training steps | {med['fit'] - med['validations']:.1f} | each trial |",
             f"| a run: validations on {len(splits.val)} images | {med['validations']:.2f} | "
             "each trial |",
             f"| a run: outside its clock (setup) | {med['total'] - med['fit']:.2f} | each "
             "trial |"]
    if study:
        lines.append(bookkeeping(study))
    return [*lines, ""]


def bookkeeping(study: str) -> str:
    """The median of a finished study's trial wall times less their training seconds."""
    import statistics

    import optuna

    storage, _, name = study.rpartition("@")
    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    spare = [(t.datetime_complete - t.datetime_start).total_seconds()
             - float(t.user_attrs["ps.train_seconds"]) for t in trials
             if t.state.name == "COMPLETE" and t.user_attrs.get("ps.train_seconds") is not None]
    if not spare:
        return f"| bookkeeping (study {name}) | n/a: no finished trial | each trial |"
    return (f"| bookkeeping: trial wall less training (Optuna, MLflow; study {name}, "
            f"{len(spare)} trials) | {statistics.median(spare):.2f} | each trial |")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def machine_line() -> str:
    from policysearch.evidence.runinfo import machine

    m = machine()
    return (f"{m['cpu']} ({m['cores']} cores), accelerator: {m['accelerator']}, "
            f"Keras {m['keras']} on {m['backend']}")


def build_parser() -> argparse.ArgumentParser:
    """``make bench``'s flags (``python -m policysearch.evidence.bench``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--images", type=int, default=10000, help="images for epoch timing")
    parser.add_argument("--seconds", type=float, default=8.0, help="per tf.data measurement")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out")
    parser.add_argument("--only", choices=("runs", "trial", "concurrency"),
                        help="only the whole runs, a trial's breakdown, or concurrent trials")
    parser.add_argument("--study", help="STORAGE@NAME: a finished study whose trials' "
                        "bookkeeping the trial breakdown reports")
    parser.add_argument("--runs", type=_positive, default=10,
                        help="rounds of crop+flip and RA(2,9)")
    parser.add_argument("--experiment", default="cifar10", help="whose target budget the "
                        "whole runs train")
    parser.add_argument("--run-epochs", type=_positive, help="epochs of those runs (default: the "
                        "target's)")
    return parser


def main(argv: list[str] | None = None) -> str:
    args = build_parser().parse_args(argv)

    lines = ["# Benchmarks", "", f"Machine: {machine_line()}", ""]
    if args.only == "runs":
        return _finish(lines + _runs_part(args), args.out)
    if args.only == "concurrency":  # --runs: trials a process
        from policysearch.evidence.concurrency import concurrency_part

        part = concurrency_part(args.experiment, args.data_dir, args.runs, args.run_epochs)
        return _finish(lines + part, args.out)
    if args.only == "trial":
        part = trial_breakdown(args.experiment, args.data_dir, args.runs, args.study)
        print("\n".join(part), flush=True)
        return _finish(lines + part, args.out)

    import keras

    from policysearch.data.datasets import load_part

    part = load_part("cifar10", "train", args.data_dir)
    batch = part.x[:1024]
    lines += [f"## Per-op cost, 1024-image batch, magnitude 15 ({keras.backend.backend()})",
              "", "| op | ms per batch |", "|---|---|"]
    lines += [f"| {name} | {ms:.1f} |" for name, ms in per_op(batch, args.repeats)]
    print("\n".join(lines), flush=True)
    lines.append("")
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        lines.append("tf.data throughput: skipped (TensorFlow is not installed)")
    else:
        lines += ["## tf.data map throughput (TensorFlow, CPU), batch 256", "",
                  "| N ops | policysearch (img/s) | keras.layers.RandAugment (img/s) | ratio |",
                  "|---|---|---|---|"]
        for n in (2, 3):
            r = tfdata_throughput(part.x[:4096], 256, n, args.seconds)
            ours, stock = r["policysearch"], r["keras.layers.RandAugment"]
            lines.append(f"| {n} | {ours:,.0f} | {stock:,.0f} | {ours / stock:.1f}x |")
            print(lines[-1], flush=True)
    lines.append("")
    times = epoch_times(part.x[: args.images], part.y[: args.images], epochs=2)
    placement = times.pop("placement")
    lines += [f"## Proxy CNN epoch time, {args.images} images, batch 256 "
              f"(augmentation placement: {placement})", "", "| augmentation | s per epoch |",
              "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in times.items()]
    print("\n".join(lines[-len(times) - 4:]), flush=True)
    return _finish(lines + [""] + _runs_part(args), args.out)


def _runs_part(args: argparse.Namespace) -> list[str]:
    rows = run_times(args.experiment, args.data_dir, args.runs, args.run_epochs)
    epochs = f"{args.run_epochs} epochs" if args.run_epochs else "its epochs"
    lines = runs_report(rows, f"{args.experiment}'s target budget, {epochs}, {args.runs} "
                        "rounds")
    print("\n".join(lines), flush=True)
    return lines


def _finish(lines: list[str], out: str | None) -> str:
    report = "\n".join(lines) + "\n"
    if out:
        with open(out, "w") as f:
            f.write(report)
    return report


if __name__ == "__main__":
    main()
