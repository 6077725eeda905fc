"""``make bench ONLY=concurrency``: trial throughput of concurrent trial processes on this
machine's cores (issue 36): one process whose TensorFlow pools use every core, against P
processes that share them (cores / P threads each), at an experiment's proxy budget.

Each process loads the data, builds the trainer and runs one warm-up trial (the trace), then
waits; once all are ready they start together and each trains ``trials`` RA(2,9) trials.
Throughput is the trials of all processes over the span from the first start to the last end,
so start-up is left out (a search pays it once a process).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any


def child(experiment_name: str, data_dir: str | None, threads: int, trials: int,
          epochs: int | None) -> None:
    """One trial process: warm up, say ``ready``, wait for ``go`` on stdin, train, report."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))

    from policysearch.config.experiment import load_experiment
    from policysearch.data.splits import load_splits
    from policysearch.policy.definition import randaugment
    from policysearch.training.trainer import trainer_for

    exp = load_experiment(experiment_name, overrides={
        "data.data_dir": data_dir, "trainer.epochs": epochs, "trainer.validate_every": epochs})
    splits = load_splits(exp)
    trainer = trainer_for(exp, "proxy", splits)
    policy = randaugment(2, 9)
    trainer.train(policy, splits.proxy, splits.val, 0)  # the trace, paid once a process
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.time()
    seconds = [trainer.train(policy, splits.proxy, splits.val, 1 + k).seconds
               for k in range(trials)]
    print(json.dumps({"start": start, "end": time.time(), "seconds": seconds}), flush=True)


def measure(experiment_name: str, data_dir: str | None, processes: int, trials: int,
            epochs: int | None) -> dict[str, Any]:
    """``processes`` trial processes at once, ``cores // processes`` threads each."""
    cores = os.cpu_count() or 1
    threads = max(1, cores // processes)
    cmd = [sys.executable, "-m", "policysearch.evidence.concurrency", "--child",
           "--experiment", experiment_name, "--threads", str(threads), "--trials", str(trials)]
    if data_dir:
        cmd += ["--data-dir", data_dir]
    if epochs:
        cmd += ["--run-epochs", str(epochs)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=env) for _ in range(processes)]
    for proc in procs:  # every one warmed up before any starts
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"a trial process failed to start (exit {proc.wait()})")
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    reports = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"a trial process failed (exit {proc.returncode})")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    span = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    runs = [s for r in reports for s in r["seconds"]]
    return {"processes": processes, "threads": threads, "trials": len(runs), "span": span,
            "per_hour": 3600 * len(runs) / span, "median_trial": sorted(runs)[len(runs) // 2]}


def report(rows: list[dict[str, Any]], title: str) -> list[str]:
    one = next((r for r in rows if r["processes"] == 1), rows[0])
    lines = [f"## Concurrent trials: {title}", "",
             "| processes | threads each | trials | span s | trials per hour | median trial s "
             "| throughput vs 1 process |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['processes']} | {r['threads']} | {r['trials']} | {r['span']:.0f} | "
              f"{r['per_hour']:.0f} | {r['median_trial']:.1f} | "
              f"{r['per_hour'] / one['per_hour']:.2f}x |" for r in rows]
    best = max(rows, key=lambda r: r["per_hour"])
    lines += ["", f"Most trials per hour here: {best['processes']} process(es) of "
              f"{best['threads']} thread(s) (`--workers {best['processes']}`)."]
    return lines


def concurrency_part(experiment_name: str, data_dir: str | None, trials: int,
                     epochs: int | None, counts: tuple[int, ...] = (1, 2)) -> list[str]:
    rows = []
    for processes in counts:
        rows.append(measure(experiment_name, data_dir, processes, trials, epochs))
        r = rows[-1]
        print(f"bench: {processes} process(es) x {r['threads']} thread(s): {r['trials']} trials "
              f"in {r['span']:.0f} s, {r['per_hour']:.0f} an hour", flush=True)
    budget = f"{epochs} epochs" if epochs else "its epochs"
    return report(rows, f"{experiment_name}'s proxy budget, {budget}, {trials} RA(2,9) trials "
                        "a process after a warm-up trial")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--experiment", default="cifar10")
    parser.add_argument("--data-dir")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--run-epochs", type=int)
    args = parser.parse_args(argv)
    if args.child:
        child(args.experiment, args.data_dir, args.threads, args.trials, args.run_epochs)
    else:
        print("\n".join(concurrency_part(args.experiment, args.data_dir, args.trials,
                                         args.run_epochs)))


if __name__ == "__main__":
    main()
