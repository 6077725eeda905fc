"""The ``policysearch`` command.

Every problem the user can fix ends in one line on stderr and a non-zero exit; heavy imports
(TensorFlow, Keras, MLflow) happen only in the commands that need them, so ``show`` and
``export`` answer at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from policysearch.errors import PolicySearchError

EXIT_INTERRUPTED = {15: 143, 2: 130}


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


# ----------------------------------------------------------------------------------------------
# Commands


def cmd_search(args: argparse.Namespace) -> int:
    _quiet()
    from policysearch.config import load_experiment
    from policysearch.spaces import load_space
    from policysearch.storage import default_storage
    from policysearch.study import run_search

    overrides = {
        "data.data_dir": args.data_dir,
        "data.train_size": args.train_size,
        "data.val_size": args.val_size,
        "trainer.epochs": args.epochs,
        "trainer.batch_size": args.batch_size,
        "trainer.placement": args.placement,
        "search.space": args.space,
        "search.trials": args.trials,
        "search.timeout_minutes": args.timeout,
        "search.sampler": args.sampler,
        "search.pruner": args.pruner,
        "search.seed": args.seed,
        "reevaluate.top_k": args.top_k,
        "reevaluate.seeds": args.reeval_seeds,
    }
    experiment = load_experiment(args.experiment, dataset=args.dataset, smoke=args.smoke,
                                 overrides=overrides)
    space = load_space(experiment.search.space)
    study_name = args.study_name or _default_study_name(experiment.name, space.name, args.smoke)
    export_path = Path(args.export or f"policies/{study_name}.json")
    run_search(experiment, space, storage_url=args.storage or default_storage(),
               study_name=study_name, export_path=export_path, tracking_uri=args.tracking_uri,
               mlflow_experiment=args.mlflow_experiment, workers=args.workers,
               devices=args.devices.split(",") if args.devices else None,
               system_metrics=args.system_metrics, log=_print)
    _print(f"policy: {export_path}   (load it with policysearch.load_policy({str(export_path)!r}))")
    _print("MLflow: run `make ui` and open the experiment "
           f"'policysearch-{Path(experiment.dataset).name}'")
    return 0


def _default_study_name(experiment: str, space: str, smoke: bool) -> str:
    return f"{experiment}-{space}" + ("-smoke" if smoke else "")


def cmd_worker(args: argparse.Namespace) -> int:
    _quiet()
    from policysearch.storage import default_storage
    from policysearch.study import run_worker

    run_worker(args.study_name, args.storage or default_storage(), args.tracking_uri,
               args.worker_id, log=_print)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    _quiet()
    from policysearch.config import load_experiment
    from policysearch.policy import read_policy
    from policysearch.validate import table, validate

    policy = read_policy(args.policy)
    name = args.experiment or policy.source.get("experiment_file")
    dataset = args.dataset or policy.source.get("dataset")
    experiment = load_experiment(name, dataset=dataset, overrides={
        "data.data_dir": args.data_dir, "validate.train_size": args.train_size})
    epochs = args.epochs or experiment.validate.epochs
    seeds = args.seeds or experiment.validate.seeds
    result = validate(policy, experiment, epochs=epochs, seeds=seeds,
                      tracking_uri=args.tracking_uri, log=_print)
    _print("")
    _print(f"test accuracy on {result['test_size']} test images after {epochs} epochs on "
           f"{result['train_size']} training images ({seeds} seeds each):")
    _print(table(result["summary"]))
    if args.out:
        import json

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from policysearch.policy import read_policy

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
        if src.get("val_accuracy_mean") is not None:
            _print(f"validation accuracy {src['val_accuracy_mean']:.4f} ± "
                   f"{src.get('val_accuracy_std', 0):.4f} over {src.get('n_seeds')} seeds")
        base = src.get("best_baseline")
        if base:
            name = base["name"].removeprefix("baseline ")
            _print(f"best baseline {name}: {base['val_accuracy_mean']:.4f} ± "
                   f"{base['val_accuracy_std']:.4f}; gain {src.get('gain_over_best_baseline')} "
                   f"(std. error {src.get('gain_standard_error')}): {src.get('note', '')}")
    if args.epochs:
        from policysearch.explain import explain

        _print("")
        for line in explain(policy, args.epochs, height, width).lines():
            _print(line)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from policysearch.exporters import export
    from policysearch.policy import read_policy

    result = export(read_policy(args.policy), args.to)
    if result.exact or args.approximate:
        if not result.exact:
            _print(f"# approximate: {args.to} cannot express this policy exactly:")
            for diff in result.differences:
                _print(f"#  - {diff}")
        for note in result.notes:
            _print(f"# note: {note}")
        _print(result.code)
        return 0
    raise PolicySearchError(f"{args.to} cannot express this policy exactly: "
                            + "; ".join(result.differences)
                            + " (pass --approximate for the nearest equivalent)")


def cmd_preview(args: argparse.Namespace) -> int:
    _quiet()
    from policysearch.data import load_part
    from policysearch.plots import epochs_grid, sample_grid
    from policysearch.policy import read_policy

    policy = read_policy(args.policy)
    dataset = args.dataset or policy.source.get("dataset") or "cifar10"
    part = load_part(dataset, "train", args.data_dir)
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
    from policysearch.storage import default_storage
    from policysearch.study import sync_mlflow

    sync_mlflow(args.study_name, args.storage or default_storage(), args.tracking_uri,
                log=_print)
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    _quiet()
    from policysearch.proof import run_experiment

    run_experiment(args.experiment, smoke=args.smoke, storage=args.storage,
                   tracking_uri=args.tracking_uri, out=args.out, data_dir=args.data_dir,
                   log=_print)
    return 0


def cmd_fidelity(args: argparse.Namespace) -> int:
    """Train a panel of policies at the proxy and target budgets; report rank agreement."""
    _quiet()
    import shlex
    import signal

    from policysearch.config import load_experiment
    from policysearch.fidelity import DEFAULT_PANEL, build_panel, default_out, run_fidelity

    experiment = load_experiment(args.experiment, smoke=args.smoke,
                                 overrides={"data.data_dir": args.data_dir,
                                            "fidelity.seeds": args.seeds})
    panel = build_panel(args.panel or experiment.fidelity.panel or DEFAULT_PANEL)
    out = Path(args.out) if args.out else default_out(experiment, args.smoke)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        run_fidelity(experiment, panel, list(range(1, experiment.fidelity.seeds + 1)), out,
                     tracking_uri=args.tracking_uri, log=_print,
                     command="policysearch " + shlex.join(sys.argv[1:]))
    except KeyboardInterrupt:
        print(f"policysearch: fidelity interrupted; finished runs are saved in "
              f"{out.with_suffix('.json')}: run the same command to resume", file=sys.stderr,
              flush=True)
        return 130
    return 0


# ----------------------------------------------------------------------------------------------
# Parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="policysearch", description=__doc__.splitlines()[0])
    from policysearch._version import __version__

    parser.add_argument("--version", action="version", version=f"policysearch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("search", help="search a policy and export the winner")
    p.add_argument("--experiment", help="experiments/<NAME>.yaml or a path (default: the "
                   "dataset's experiment file, else built-in defaults)")
    p.add_argument("--dataset", help="cifar10, or a folder/.tar.gz with train/<class>/*.jpg")
    p.add_argument("--data-dir", help="folder with cifar10-images.tar.gz "
                   "(or set POLICYSEARCH_DATA_DIR)")
    p.add_argument("--space", help="search space: a name in search_spaces/ or a YAML file")
    p.add_argument("--trials", type=int, help="searched trials (the baselines run besides)")
    p.add_argument("--timeout", type=float, help="stop starting trials after this many minutes")
    p.add_argument("--epochs", type=int, help="proxy training epochs per trial")
    p.add_argument("--train-size", type=int, help="training images per trial")
    p.add_argument("--val-size", type=int, help="validation images (from the training part)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--placement", choices=("auto", "data", "model"),
                   help="run augmentation in the tf.data pipeline or in the train step")
    p.add_argument("--seed", type=int, help="sampler and trial seed")
    p.add_argument("--sampler", choices=("tpe", "random", "qmc"))
    p.add_argument("--pruner", choices=("hyperband", "median", "none"))
    p.add_argument("--top-k", type=int, help="candidates re-trained before export")
    p.add_argument("--reeval-seeds", type=int, help="seeds per re-trained candidate")
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///runs/optuna.db, "
                   "or POLICYSEARCH_STORAGE)")
    p.add_argument("--study-name", help="name of the study; an existing one is resumed")
    p.add_argument("--export", help="where to write the policy (default policies/<study>.json)")
    p.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    p.add_argument("--devices", help="comma-separated GPU ids, one per worker in turn")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default MLFLOW_TRACKING_URI, "
                   "else sqlite:///runs/mlflow.db)")
    p.add_argument("--mlflow-experiment", help="MLflow experiment name "
                   "(default policysearch-<dataset>)")
    p.add_argument("--system-metrics", action="store_true",
                   help="log CPU, memory and GPU use to the study's MLflow run")
    p.add_argument("--smoke", action="store_true", help="apply the experiment's smoke budget")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("worker", help="join an existing study and run its trials")
    p.add_argument("--study-name", required=True)
    p.add_argument("--storage")
    p.add_argument("--tracking-uri")
    p.add_argument("--worker-id", default=f"{os.uname().nodename}-{os.getpid()}")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("validate", help="test accuracy of a policy against the baselines "
                       "(the only command that reads the test split)")
    p.add_argument("policy")
    p.add_argument("--dataset")
    p.add_argument("--experiment")
    p.add_argument("--data-dir")
    p.add_argument("--epochs", type=int)
    p.add_argument("--seeds", type=int)
    p.add_argument("--train-size", type=int)
    p.add_argument("--tracking-uri")
    p.add_argument("--out", help="also write the results as JSON")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("show", help="print a policy in readable form")
    p.add_argument("policy")
    p.add_argument("--epochs", type=int, help="also explain what E epochs of it do to an image")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("export", help="print the policy for another framework")
    p.add_argument("policy")
    p.add_argument("--to", required=True, choices=("torchvision", "timm", "tf-models"))
    p.add_argument("--approximate", action="store_true",
                   help="print the nearest equivalent even when it is not exact")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("preview", help="write a PNG grid of original and augmented samples")
    p.add_argument("policy")
    p.add_argument("--dataset")
    p.add_argument("--data-dir")
    p.add_argument("--epochs", type=int, help="one row per image across this many epochs")
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--base", action="store_true", help="include the search's crop and flip")
    p.add_argument("--out")
    p.set_defaults(func=cmd_preview)

    p = sub.add_parser("sync-mlflow", help="log to MLflow the trials it missed")
    p.add_argument("--study-name", required=True)
    p.add_argument("--storage")
    p.add_argument("--tracking-uri")
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("experiment", help="search, then validate against the baselines, and "
                       "write experiments/results/<NAME>.md")
    p.add_argument("experiment")
    p.add_argument("--data-dir")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--storage")
    p.add_argument("--tracking-uri")
    p.add_argument("--out", help="results file (default experiments/results/<NAME>.md)")
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser("fidelity", help="does the proxy rank policies like the target training? "
                       "(writes experiments/results/<NAME>-fidelity.md)")
    p.add_argument("experiment", nargs="?", default="cifar10",
                   help="experiments/<NAME>.yaml or a path (default cifar10)")
    p.add_argument("--seeds", type=int, help="seeds per policy and budget (default fidelity.seeds)")
    p.add_argument("--panel", nargs="+", metavar="POLICY", help="panel entries: baseline names, "
                   "RA(N,M), TA, optionally with [geometric], [colour] or [Op1,Op2]")
    p.add_argument("--data-dir", help="folder with cifar10-images.tar.gz")
    p.add_argument("--smoke", action="store_true", help="apply the experiment's smoke budget")
    p.add_argument("--out", help="results file (default experiments/results/<NAME>-fidelity.md)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI")
    p.set_defaults(func=cmd_fidelity)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except PolicySearchError as err:
        print(f"policysearch: error: {err}", file=sys.stderr, flush=True)
        return err.exit_code
    except BaseException as err:
        from policysearch.study import Interrupted

        if isinstance(err, (Interrupted, KeyboardInterrupt)):
            signum = getattr(err, "signum", 2)
            print(f"policysearch: interrupted ({'SIGTERM' if signum == 15 else 'SIGINT'}); the "
                  "study is saved: run the same command to resume", file=sys.stderr, flush=True)
            return EXIT_INTERRUPTED.get(signum, 130)
        if isinstance(err, ValueError) and err.__class__.__module__ == "builtins":
            print(f"policysearch: error: {err}", file=sys.stderr, flush=True)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
