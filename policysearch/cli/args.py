"""The ``policysearch`` command line: subcommands, their flags, and argument types that refuse
bad values in one line (``policysearch search: error: argument --trials: ...``, exit 2)."""

from __future__ import annotations

import argparse
import os
from typing import Any


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


def build_parser(doc: str = "policysearch") -> argparse.ArgumentParser:
    """The ``policysearch`` command line; each subcommand sets ``handler``."""
    from policysearch.config.samplers import PRUNERS, SAMPLERS

    parser = _Parser(prog="policysearch", description=doc)
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
    p.add_argument("--val-size", type=count(), help="search-validation images (from the training "
                   "part)")
    p.add_argument("--selection-size", type=count(), help="selection images: the race chooses "
                   "the winner on them (from the training part)")
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
    p.set_defaults(handler="search")

    p = sub.add_parser("worker", help="join an existing study and run its trials")
    p.add_argument("--study-name", required=True)
    p.add_argument("--storage")
    p.add_argument("--tracking-uri")
    p.add_argument("--worker-id", default=f"{os.uname().nodename}-{os.getpid()}")
    p.add_argument("--deadline", type=float, help="stop claiming trials after this Unix time")
    p.set_defaults(handler="worker")

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
    p.add_argument("--flip-variants", action="store_true", default=None,
                   help="also train each baseline with the base flip off (validate.flip_variants)")
    p.add_argument("--tracking-uri")
    p.add_argument("--out", help="also write the results as JSON")
    p.set_defaults(handler="validate")

    p = sub.add_parser("show", help="print a policy in readable form")
    p.add_argument("policy")
    p.add_argument("--epochs", type=count(),
                   help="also explain what E epochs of it do to an image")
    p.set_defaults(handler="show")

    p = sub.add_parser("export", help="print the policy for another framework")
    p.add_argument("policy")
    p.add_argument("--to", required=True, choices=("torchvision", "timm", "tf-models"))
    p.add_argument("--approximate", action="store_true",
                   help="print the target's nearest stock form and how far it is from the policy")
    p.set_defaults(handler="export")

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
    p.set_defaults(handler="preview")

    p = sub.add_parser("sync-mlflow", help="log to MLflow the trials it missed")
    p.add_argument("--study-name", required=True)
    p.add_argument("--storage")
    p.add_argument("--tracking-uri")
    p.set_defaults(handler="sync")

    p = sub.add_parser("experiment", help="search, then validate against the baselines, and "
                       "write experiments/results/<NAME>.md")
    p.add_argument("experiment")
    p.add_argument("--data-dir")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--storage")
    p.add_argument("--tracking-uri")
    p.add_argument("--out", help="results file (default experiments/results/<NAME>.md)")
    p.set_defaults(handler="experiment")

    p = sub.add_parser("fidelity", help="does the proxy rank policies like the target training? "
                       "(writes experiments/results/<NAME>-fidelity.md)")
    p.add_argument("experiment", nargs="?", default="cifar10",
                   help="experiments/<NAME>.yaml or a path (default cifar10)")
    p.add_argument("--seeds", type=count(2),
                   help="seeds per policy and budget (default fidelity.seeds)")
    p.add_argument("--panel", nargs="+", metavar="POLICY", help="panel entries: baseline names, "
                   "RA(N,M), TA, optionally with [geometric], [colour] or [Op1,Op2]")
    p.add_argument("--data-dir", help="folder with cifar10-images.tar.gz")
    p.add_argument("--smoke", action="store_true", help="apply the experiment's smoke budget")
    p.add_argument("--out", help="results file (default experiments/results/<NAME>-fidelity.md)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI")
    p.set_defaults(handler="fidelity")
    return parser
