"""The ``policysearch`` command.

Every problem the user can fix ends in one line on stderr and a non-zero exit; heavy imports
(TensorFlow, Keras, MLflow) happen only in the commands that need them, so ``show`` and
``export`` answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

from policysearch.errors import PolicySearchError

EXIT_INTERRUPTED = {15: 143, 2: 130}
# Commands that train: SIGTERM/SIGINT is recorded and acted on at the next batch or trial
# (training.interrupts), and the process exits at the latest STOP_SECONDS after it.
LONG_COMMANDS = {"search", "worker", "validate", "experiment", "fidelity"}


def _quiet() -> None:
    """Keep TensorFlow's and absl's start-up chatter out of the progress display."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "tensorflow"))
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module="keras")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def _print(*args: Any) -> None:
    print(*args, flush=True)


def _note(message: str) -> None:
    print(f"policysearch: note: {message}", file=sys.stderr, flush=True)


def local_cores() -> int:
    """CPU cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def cap_workers(workers: int) -> int:
    """``workers``, at most one per core here (more only share the same cores)."""
    cores = local_cores()
    if workers > cores:
        _note(f"--workers {workers} is more than the {cores} CPU core(s) here; "
              f"running {cores} worker(s)")
        return cores
    return workers


# ----------------------------------------------------------------------------------------------
# Commands


def cmd_search(args: argparse.Namespace) -> int:
    _quiet()
    if args.devices:  # before any framework starts: this process is worker 0
        os.environ["CUDA_VISIBLE_DEVICES"] = args.devices.split(",")[0]
    from policysearch.config.experiment import load_experiment
    from policysearch.search.orchestrate import run_search
    from policysearch.study.spaces import load_space
    from policysearch.study.storage import default_storage
    from policysearch.tracking.client import mlflow_experiment_name

    args.workers = cap_workers(args.workers)
    overrides = {
        "data.data_dir": args.data_dir,
        "data.train_size": args.train_size,
        "data.val_size": args.val_size,
        "data.selection_size": args.selection_size,
        "data.image_size": args.image_size,
        "base_augment.crop_padding": args.crop_padding,
        "base_augment.flip": args.flip,
        "trainer.epochs": args.epochs,
        "trainer.batch_size": args.batch_size,
        "trainer.placement": args.placement,
        "search.space": args.space,
        "search.trials": args.trials,
        "search.timeout_minutes": args.timeout,
        "search.sampler": args.sampler,
        "search.pruner": args.pruner,
        "search.seed": args.seed,
        "race.top_k": args.top_k,
        "race.min_seeds": args.min_seeds,
        "race.max_seeds": args.max_seeds,
        "race.budget": args.race_budget,
    }
    experiment = load_experiment(args.experiment, dataset=args.dataset, smoke=args.smoke,
                                 overrides=overrides)
    space = load_space(experiment.search.space)
    study_name = args.study_name or default_study_name(experiment, space.name, args.smoke)
    export_path = Path(args.export or f"policies/{study_name}.json")
    mlflow_experiment = args.mlflow_experiment or mlflow_experiment_name(experiment.dataset)
    policy = run_search(experiment, space, storage_url=args.storage or default_storage(),
                        study_name=study_name, export_path=export_path,
                        tracking_uri=args.tracking_uri, mlflow_experiment=mlflow_experiment,
                        workers=args.workers,
                        devices=args.devices.split(",") if args.devices else None,
                        system_metrics=args.system_metrics, log=_print)
    if policy is not None:
        _print(f"policy: {export_path}")
        _print(load_hint(policy, export_path))
    _print(f"MLflow: run `make ui` and open the experiment {mlflow_experiment!r}")
    return 0


def load_hint(policy: Any, path: Path) -> str:
    """How to use the exported file; crop+flip alone is a layer that adds nothing by itself."""
    if policy.type == "none":
        return ("the winner is crop+flip alone: keep your training's crop and flip, or load "
                f"them with policysearch.load_policy({str(path)!r}, base=True)")
    return (f"load it with policysearch.load_policy({str(path)!r}) (add base=True for the "
            "search's crop and flip), or policysearch.load_transform(...) outside Keras")


def default_study_name(experiment: Any, space: str, smoke: bool) -> str:
    """The experiment's name, or the dataset's for a folder searched with the defaults."""
    from policysearch.data.datasets import slug

    name = experiment.name if experiment.source != "defaults" else slug(experiment.dataset)
    return f"{name}-{space}" + ("-smoke" if smoke else "")


def cmd_worker(args: argparse.Namespace) -> int:
    _quiet()
    from policysearch.search.orchestrate import run_worker
    from policysearch.study.storage import default_storage

    run_worker(args.study_name, args.storage or default_storage(), args.tracking_uri,
               args.worker_id, deadline=args.deadline, log=_print)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    _quiet()
    from policysearch.config.experiment import experiment_from_dict, load_experiment, with_overrides
    from policysearch.evidence.validate import table, validate
    from policysearch.policy.definition import read_policy

    policy = read_policy(args.policy)
    overrides = {"data.data_dir": args.data_dir, "data.val_size": args.val_size,
                 "data.image_size": args.image_size, "target.train_size": args.train_size,
                 "target.trainer.epochs": args.epochs, "validate.seeds": args.seeds}
    stored = policy.source.get("experiment_config")
    if args.experiment or not isinstance(stored, dict):
        experiment = load_experiment(args.experiment, dataset=args.dataset or
                                     policy.source.get("dataset"), overrides=overrides)
    else:  # the experiment that found the policy, as it was
        origin = f"{args.policy} (source.experiment_config)"
        experiment = with_overrides(experiment_from_dict(stored, origin),
                                    {"dataset": args.dataset, **overrides}, origin)
    seeds = experiment.validate.seeds
    result = validate(policy, experiment, seeds=seeds, tracking_uri=args.tracking_uri,
                      log=_print)
    _print("")
    _print(f"test accuracy on {result['test_size']} test images after {result['epochs']} epochs "
           f"on {result['train_size']} training images (the target budget; {seeds} seeds each, "
           "paired by seed):")
    _print(table(result["summary"]))
    if args.out:
        import json

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from policysearch.policy.definition import read_policy

    policy = read_policy(args.policy)
    size = policy.source.get("image_size") or [32, 32]
    height, width = int(size[0]), int(size[1])
    _print(repr(policy))
    for line in policy.describe(height, width):
        _print(line)
    if policy.base:
        _print(f"base augmentation during the search: crop padding "
               f"{policy.base.get('crop_padding', 0)}, flip {policy.base.get('flip', False)}")
    src = policy.source
    if src:
        _print(f"found on {src.get('dataset')} by study {src.get('study')!r} "
               f"(space {src.get('space')}, trial {src.get('trial')})")
        if src.get("decision"):
            _print(f"decision: {src['decision']}")
        if src.get("reason"):
            _print(f"why: {src['reason']}")
    if args.epochs:
        from policysearch.policy.explain import explain

        _print("")
        for line in explain(policy, args.epochs, height, width).lines():
            _print(line)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from policysearch.policy.definition import read_policy
    from policysearch.policy.exporters import export

    result = export(read_policy(args.policy), args.to)
    if args.approximate and result.approximate:
        _print(f"# approximate: {result.distance}")
        _print(result.approximate)
        return 0
    if result.exact:
        for note in result.notes:
            _print(f"# note: {note}")
        _print(result.code)
        return 0
    raise PolicySearchError(f"{args.to} cannot express this policy exactly: "
                            + "; ".join(result.differences)
                            + " (pass --approximate for the nearest stock form)")


def cmd_preview(args: argparse.Namespace) -> int:
    _quiet()
    from policysearch.data.datasets import load_part
    from policysearch.policy.definition import read_policy
    from policysearch.tracking.plots import epochs_grid, sample_grid

    policy = read_policy(args.policy)
    dataset = args.dataset or policy.source.get("dataset") or "cifar10"
    part = load_part(dataset, "train", args.data_dir, args.image_size)
    import numpy as np

    picks = [int(np.flatnonzero(part.y == c)[0]) for c in np.unique(part.y)][: args.images]
    images = part.x[picks]
    padding = int(policy.base.get("crop_padding", 0)) if args.base else 0
    flip = bool(policy.base.get("flip", False)) if args.base else False
    if args.epochs:
        png = epochs_grid(policy, images, epochs=args.epochs, seed=args.seed,
                          crop_padding=padding, flip=flip)
    else:
        png = sample_grid(policy, images, seed=args.seed, crop_padding=padding, flip=flip)
    out = Path(args.out or f"previews/{Path(args.policy).stem}"
               f"{'-epochs' if args.epochs else ''}.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(png)
    _print(f"wrote {out}")
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    _quiet()
    from policysearch.study.storage import default_storage
    from policysearch.tracking.sync import sync_mlflow

    sync_mlflow(args.study_name, args.storage or default_storage(), args.tracking_uri,
                log=_print)
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    _quiet()
    from policysearch.search.proof import run_experiment

    run_experiment(args.experiment, smoke=args.smoke, storage=args.storage,
                   tracking_uri=args.tracking_uri, out=args.out, data_dir=args.data_dir,
                   log=_print)
    return 0


def cmd_fidelity(args: argparse.Namespace) -> int:
    """Train a panel of policies at the proxy and target budgets; report rank agreement."""
    _quiet()
    import shlex

    from policysearch.config.experiment import load_experiment
    from policysearch.evidence.fidelity import DEFAULT_PANEL, build_panel, default_out, run_fidelity
    from policysearch.training.interrupts import Interrupted

    experiment = load_experiment(args.experiment, smoke=args.smoke,
                                 overrides={"data.data_dir": args.data_dir,
                                            "fidelity.seeds": args.seeds})
    panel = build_panel(args.panel or experiment.fidelity.panel or DEFAULT_PANEL)
    out = Path(args.out) if args.out else default_out(experiment, args.smoke)

    try:
        run_fidelity(experiment, panel, list(range(1, experiment.fidelity.seeds + 1)), out,
                     tracking_uri=args.tracking_uri, log=_print,
                     command="policysearch " + shlex.join(sys.argv[1:]))
    except (Interrupted, KeyboardInterrupt) as stop:
        print(f"policysearch: fidelity interrupted; finished runs are saved in "
              f"{out.with_suffix('.json')}: run the same command to resume", file=sys.stderr,
              flush=True)
        return EXIT_INTERRUPTED.get(getattr(stop, "signum", signal.SIGINT), 130)
    return 0


COMMANDS = {
    "search": cmd_search,
    "worker": cmd_worker,
    "validate": cmd_validate,
    "show": cmd_show,
    "export": cmd_export,
    "preview": cmd_preview,
    "sync": cmd_sync,
    "experiment": cmd_experiment,
    "fidelity": cmd_fidelity,
}


def main(argv: list[str] | None = None) -> int:
    from policysearch.cli.args import build_parser
    from policysearch.training import interrupts

    parser = build_parser(__doc__.splitlines()[0])
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:  # a bad argument (one line printed), --help or --version
        return exit.code if isinstance(exit.code, int) else 2
    long_running = args.handler in LONG_COMMANDS
    if long_running:  # before anything heavy: a signal during start-up is not lost either
        interrupts.set_hard_stop(interrupts.stop_seconds())
    try:
        with interrupts.interruptible() if long_running else contextlib.nullcontext():
            return COMMANDS[args.handler](args)
    except PolicySearchError as err:
        print(f"policysearch: error: {err}", file=sys.stderr, flush=True)
        return err.exit_code
    except BaseException as err:
        if isinstance(err, (interrupts.Interrupted, KeyboardInterrupt)):
            signum = getattr(err, "signum", signal.SIGINT)
            print(f"policysearch: interrupted ({signal.Signals(signum).name}); the study is "
                  "saved: run the same command to resume", file=sys.stderr, flush=True)
            return EXIT_INTERRUPTED.get(signum, 130)
        raise  # a bug: keep its traceback


if __name__ == "__main__":
    sys.exit(main())
