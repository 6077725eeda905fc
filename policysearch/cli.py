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
    from policysearch.config import load_experiment
    from policysearch.search.orchestrate import mlflow_experiment_name, run_search
    from policysearch.spaces import load_space
    from policysearch.storage import default_storage

    args.workers = cap_workers(args.workers)
    overrides = {
        "data.data_dir": args.data_dir,
        "data.train_size": args.train_size,
        "data.val_size": args.val_size,
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
    from policysearch.data import slug

    name = experiment.name if experiment.source != "defaults" else slug(experiment.dataset)
    return f"{name}-{space}" + ("-smoke" if smoke else "")


def cmd_worker(args: argparse.Namespace) -> int:
    _quiet()
    from policysearch.search.orchestrate import run_worker
    from policysearch.storage import default_storage

    run_worker(args.study_name, args.storage or default_storage(), args.tracking_uri,
               args.worker_id, deadline=args.deadline, log=_print)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    _quiet()
    from policysearch.config import experiment_from_dict, load_experiment, with_overrides
    from policysearch.policy import read_policy
    from policysearch.validate import table, validate

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
        if src.get("decision"):
            _print(f"decision: {src['decision']}")
        if src.get("reason"):
            _print(f"why: {src['reason']}")
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
    from policysearch.data import load_part
    from policysearch.plots import epochs_grid, sample_grid
    from policysearch.policy import read_policy

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
    from policysearch.storage import default_storage
    from policysearch.tracking.sync import sync_mlflow

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


# ----------------------------------------------------------------------------------------------
# Parser


class _Parser(argparse.ArgumentParser):
    """Bad arguments end in one line (``policysearch search: error: ...``), exit 2."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def count(low: int = 1) -> Any:
    """An argparse type: an integer of at least ``low``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    parse.__name__ = "count"
    return parse


def minutes(text: str) -> float:
    """An argparse type: a positive, finite number of minutes."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of minutes, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def padding(text: str) -> int | str:
    """An argparse type: ``auto`` or a number of pixels (0: no crop)."""
    if text == "auto":
        return text
    try:
        return count(0)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected auto or pixels (0 or more), got {text!r}") \
            from None


def boolean(text: str) -> bool:
    """An argparse type: true/false (also yes/no, on/off, 1/0)."""
    value = text.strip().lower()
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    from policysearch.search.samplers import PRUNERS, SAMPLERS

    parser = _Parser(prog="policysearch", description=__doc__.splitlines()[0])
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
    p.add_argument("--trials", type=count(0), help="searched trials (the baselines run besides)")
    p.add_argument("--timeout", type=minutes,
                   help="stop starting trials after this many minutes")
    p.add_argument("--epochs", type=count(), help="proxy training epochs per trial")
    p.add_argument("--train-size", type=count(), help="training images per trial")
    p.add_argument("--val-size", type=count(), help="validation images (from the training part)")
    p.add_argument("--batch-size", type=count())
    p.add_argument("--image-size", type=count(8), metavar="N",
                   help="decode every image to N x N (shorter side resized, bicubic, then "
                        "centre crop); needed for large or mixed-size images")
    p.add_argument("--crop-padding", type=padding, metavar="auto|PX",
                   help="base random crop padding in pixels (auto: image side / 8)")
    p.add_argument("--flip", type=boolean, metavar="true|false",
                   help="base random horizontal flip (false where a flip changes the label)")
    p.add_argument("--placement", choices=("auto", "data", "model"),
                   help="run augmentation in the tf.data pipeline or in the train step")
    p.add_argument("--seed", type=count(0), help="sampler and trial seed")
    p.add_argument("--sampler", choices=tuple(SAMPLERS))
    p.add_argument("--pruner", choices=tuple(PRUNERS))
    p.add_argument("--top-k", type=count(1), help="searched candidates raced against the baseline")
    p.add_argument("--min-seeds", type=count(2), help="seeds every contender of the race gets")
    p.add_argument("--max-seeds", type=count(2), help="seeds a close contender may reach")
    p.add_argument("--race-budget", choices=("proxy", "target"),
                   help="which training the race runs (default: the experiment's)")
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///runs/optuna.db, "
                   "or POLICYSEARCH_STORAGE)")
    p.add_argument("--study-name", help="name of the study; an existing one is resumed")
    p.add_argument("--export", help="where to write the policy (default policies/<study>.json)")
    p.add_argument("--workers", type=count(), default=1,
                   help="worker processes on this machine (at most one per CPU core)")
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
    p.add_argument("--deadline", type=float, help="stop claiming trials after this Unix time")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("validate", help="test accuracy of a policy against the baselines "
                       "(the only command that reads the test split)")
    p.add_argument("policy")
    p.add_argument("--dataset")
    p.add_argument("--experiment")
    p.add_argument("--data-dir")
    p.add_argument("--epochs", type=count(), help="target training epochs (default: the "
                   "experiment's target)")
    p.add_argument("--seeds", type=count(2), help="seeds per policy (paired)")
    p.add_argument("--train-size", type=count(), help="target training images")
    p.add_argument("--val-size", type=count(), help="validation images (a small dataset needs few)")
    p.add_argument("--image-size", type=count(8), metavar="N",
                   help="decode every image to N x N (as the search did with --image-size)")
    p.add_argument("--tracking-uri")
    p.add_argument("--out", help="also write the results as JSON")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("show", help="print a policy in readable form")
    p.add_argument("policy")
    p.add_argument("--epochs", type=count(),
                   help="also explain what E epochs of it do to an image")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("export", help="print the policy for another framework")
    p.add_argument("policy")
    p.add_argument("--to", required=True, choices=("torchvision", "timm", "tf-models"))
    p.add_argument("--approximate", action="store_true",
                   help="print the target's nearest stock form and how far it is from the policy")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("preview", help="write a PNG grid of original and augmented samples")
    p.add_argument("policy")
    p.add_argument("--dataset")
    p.add_argument("--data-dir")
    p.add_argument("--epochs", type=count(), help="one row per image across this many epochs")
    p.add_argument("--images", type=count(), default=8)
    p.add_argument("--seed", type=count(0), default=0)
    p.add_argument("--image-size", type=count(8), metavar="N",
                   help="decode every image to N x N (as the search did with --image-size)")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:  # a bad argument (one line printed), --help or --version
        return exit.code if isinstance(exit.code, int) else 2
    try:
        return args.func(args)
    except PolicySearchError as err:
        print(f"policysearch: error: {err}", file=sys.stderr, flush=True)
        return err.exit_code
    except BaseException as err:
        from policysearch.search.worker import Interrupted

        if isinstance(err, (Interrupted, KeyboardInterrupt)):
            signum = getattr(err, "signum", 2)
            print(f"policysearch: interrupted ({'SIGTERM' if signum == 15 else 'SIGINT'}); the "
                  "study is saved: run the same command to resume", file=sys.stderr, flush=True)
            return EXIT_INTERRUPTED.get(signum, 130)
        raise  # a bug: keep its traceback


if __name__ == "__main__":
    sys.exit(main())
