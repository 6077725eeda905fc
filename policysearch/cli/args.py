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


def count(low: int = 1, high: int | None = None, why: str = "") -> Any:
    """An argparse type: an integer of at least ``low`` (and at most ``high``, ``why`` saying
    what the maximum is for)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {value}"
                                             + (f" ({why})" if why else ""))
        return value

    parse.__name__ = "count"
    return parse


def given(text: str) -> str:
    """An argparse type: a value that is not empty (an empty ``--storage ''`` or
    ``--export ''`` must not fall back to the default in silence)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give a value or leave the option out")
    return text


given.__name__ = "value"


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


def size(text: str) -> int | str:
    """An argparse type: ``auto`` or a number of images (1 or more)."""
    if text == "auto":
        return text
    try:
        return count(1)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected auto or a number of images (1 or more), "
                                         f"got {text!r}") from None


def boolean(text: str) -> bool:
    """An argparse type: true/false (also yes/no, on/off, 1/0)."""
    value = text.strip().lower()
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


PREVIEW_EPOCHS = 32
"""Most epochs ``preview --epochs`` draws (one grid column each; about a second each on a CPU
core, so the grid comes within a minute or so)."""
PREVIEW_IMAGES = 16
"""Most images (rows) ``preview`` draws."""
STUDY_NAME_CHARS = 100
"""Longest study name: it also names files (``policies/<name>.json``) and database rows."""


def study_name(text: str) -> str:
    """An argparse type: a study name, which also names the exported policy file, so it is
    refused (never changed) unless it is letters, digits, '_', '.', '+' and '-', starting with
    a letter, digit or '_', at most ``STUDY_NAME_CHARS`` characters (and 200 UTF-8 bytes)."""
    import re

    shown = repr(text if len(text) <= 40 else text[:40] + "...")
    if len(text) > STUDY_NAME_CHARS or len(text.encode("utf-8", "replace")) > 2 * STUDY_NAME_CHARS:
        raise argparse.ArgumentTypeError(
            f"{shown} is {len(text)} characters long; at most {STUDY_NAME_CHARS} (the name also "
            "names the policy file policies/<name>.json)")
    if not re.fullmatch(r"\w[\w.+-]*", text):
        raise argparse.ArgumentTypeError(
            f"{shown} is not a study name: use letters, digits, '_', '.', '+' and '-', starting "
            "with a letter, digit or '_' (the name also names the policy file "
            "policies/<name>.json)")
    return text


def safe_study_name(text: str) -> str:
    """``text`` made into a valid study name (for names built from an experiment's name)."""
    import re

    name = re.sub(r"[^\w.+-]", "_", text).lstrip(".+-")[:STUDY_NAME_CHARS] or "study"
    while len(name.encode()) > 2 * STUDY_NAME_CHARS:
        name = name[:-1]
    return name


def build_parser(doc: str = "policysearch") -> argparse.ArgumentParser:
    """The ``policysearch`` command line; each subcommand sets ``handler``."""
    from policysearch.config.experiment import MAX_SEED
    from policysearch.config.samplers import PRUNERS, SAMPLERS

    parser = _Parser(prog="policysearch", description=doc)
    from policysearch._version import __version__

    parser.add_argument("--version", action="version", version=f"policysearch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("search", help="search a policy and export the winner")
    p.add_argument("--experiment", type=given,
                   help="experiments/<NAME>.yaml or a path (default: the "
                   "dataset's experiment file, else built-in defaults)")
    p.add_argument("--dataset", type=given,
                   help="cifar10, mnist (NAME-images.tar.gz in the data "
                   "directory), or a folder/.tar.gz with train/<class>/*.jpg")
    p.add_argument("--data-dir", type=given,
                   help="folder with NAME-images.tar.gz archives "
                   "(or set POLICYSEARCH_DATA_DIR)")
    p.add_argument("--space", help="search space: a name in search_spaces/ or a YAML file")
    p.add_argument("--trials", type=count(0), help="searched trials (the baselines run besides)")
    p.add_argument("--timeout", type=minutes,
                   help="stop starting trials after this many minutes")
    p.add_argument("--epochs", type=count(), help="proxy training epochs per trial")
    p.add_argument("--train-size", type=size, metavar="auto|N", help="training images per "
                   "trial (auto: all the target's on a small dataset, a quarter on a large one)")
    p.add_argument("--val-size", type=size, metavar="auto|N", help="search-validation images "
                   "(from the training part; auto: 20 %%, at least 5 a class)")
    p.add_argument("--selection-size", type=size, metavar="auto|N", help="selection images: "
                   "the race chooses the winner on them (from the training part; auto: 15 %%, "
                   "at least 5 a class)")
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
    p.add_argument("--seed", type=count(0, MAX_SEED, "trials train with 1 + 1000 x seed, and "
                                        "NumPy and Keras take seeds below 2**32"),
                   help=f"sampler and trial seed (0 to {MAX_SEED})")
    p.add_argument("--sampler", choices=tuple(SAMPLERS))
    p.add_argument("--pruner", choices=tuple(PRUNERS))
    p.add_argument("--top-k", type=count(1), help="searched candidates raced against the baseline")
    p.add_argument("--min-seeds", type=count(2), help="seeds every contender of the race gets")
    p.add_argument("--max-seeds", type=count(2), help="seeds a close contender may reach")
    p.add_argument("--race-budget", choices=("proxy", "target"),
                   help="which training the race runs (default: the experiment's)")
    p.add_argument("--fidelity", metavar="JSON", help="the `policysearch fidelity` results JSON "
                   "whose measured rung agreement says where the pruner may prune (default: "
                   "experiments/results/<name>-fidelity.json, when it measured this config)")
    p.add_argument("--storage", type=given,
                   help="Optuna storage URL (default sqlite:///runs/optuna.db, "
                   "or POLICYSEARCH_STORAGE)")
    p.add_argument("--study-name", type=study_name, help="name of the study; an existing one is "
                   "resumed (letters, digits, '_', '.', '+', '-'; it names the policy file)")
    p.add_argument("--export", type=given,
                   help="where to write the policy (default policies/<study>.json)")
    p.add_argument("--workers", type=count(), default=1,
                   help="worker processes on this machine (at most one per CPU core)")
    p.add_argument("--devices", type=given,
                   help="comma-separated GPU ids, one per worker in turn")
    p.add_argument("--tracking-uri", type=given,
                   help="MLflow tracking URI (default MLFLOW_TRACKING_URI, "
                   "else sqlite:///runs/mlflow.db)")
    p.add_argument("--mlflow-experiment", help="MLflow experiment name "
                   "(default policysearch-<dataset>)")
    p.add_argument("--system-metrics", action="store_true",
                   help="log CPU, memory and GPU use to the study's MLflow run")
    p.add_argument("--smoke", action="store_true", help="apply the experiment's smoke budget")
    p.set_defaults(handler="search")

    p = sub.add_parser("worker", help="join an existing study and run its trials")
    p.add_argument("--study-name", type=study_name, required=True)
    p.add_argument("--storage", type=given)
    p.add_argument("--tracking-uri", type=given)
    p.add_argument("--worker-id", default=f"{os.uname().nodename}-{os.getpid()}")
    p.add_argument("--deadline", type=float, help="stop claiming trials after this Unix time")
    p.add_argument("--wait-for-study", type=count(0), default=0, metavar="SECONDS",
                   help="wait this long for a study that does not exist yet (a worker started "
                        "before its search; default: refuse at once)")
    p.set_defaults(handler="worker")

    p = sub.add_parser("validate", help="test accuracy of a policy against the baselines "
                       "(the only command that reads the test split); the splits and budgets "
                       "are the search's, recorded in the policy file")
    p.add_argument("policy")
    p.add_argument("--dataset", type=given,
                   help="the dataset (default: the one recorded in the policy "
                   "file); give it when the data moved")
    p.add_argument("--experiment", type=given,
                   help="an experiment file instead of the search's, recorded "
                   "in the policy file")
    p.add_argument("--data-dir", type=given)
    p.add_argument("--epochs", type=count(), help="target training epochs (default: the "
                   "experiment's target)")
    p.add_argument("--seeds", type=count(2), help="seeds per policy (paired)")
    p.add_argument("--train-size", type=count(), help="target training images")
    p.add_argument("--val-size", type=size, metavar="auto|N", help="validation images "
                   "(default: the search's, recorded in the policy file)")
    p.add_argument("--selection-size", type=size, metavar="auto|N", help="selection images "
                   "held out beside them (default: the search's)")
    p.add_argument("--image-size", type=count(8), metavar="N",
                   help="decode every image to N x N (as the search did with --image-size)")
    p.add_argument("--flip-variants", action="store_true", default=None,
                   help="also train each baseline with the base flip off (validate.flip_variants)")
    p.add_argument("--tracking-uri", type=given)
    p.add_argument("--out", type=given,
                   help="also write the results as JSON")
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
    p.add_argument("--dataset", type=given)
    p.add_argument("--data-dir", type=given)
    p.add_argument("--epochs", type=count(1, PREVIEW_EPOCHS, "one column per epoch"),
                   help=f"one row per image across this many epochs (at most {PREVIEW_EPOCHS})")
    p.add_argument("--images", type=count(1, PREVIEW_IMAGES, "one row per image"), default=8,
                   help=f"one image per class, at most this many (at most {PREVIEW_IMAGES})")
    p.add_argument("--seed", type=count(0), default=0)
    p.add_argument("--image-size", type=count(8), metavar="N",
                   help="decode every image to N x N (as the search did with --image-size)")
    p.add_argument("--base", action="store_true", help="include the search's crop and flip")
    p.add_argument("--out", type=given)
    p.set_defaults(handler="preview")

    p = sub.add_parser("sync-mlflow", help="log to MLflow the trials it missed")
    p.add_argument("--study-name", type=study_name, required=True)
    p.add_argument("--storage", type=given)
    p.add_argument("--tracking-uri", type=given)
    p.set_defaults(handler="sync")

    p = sub.add_parser("experiment", help="search, then validate against the baselines, and "
                       "write experiments/results/<NAME>.md")
    p.add_argument("experiment")
    p.add_argument("--data-dir", type=given)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--storage", type=given)
    p.add_argument("--tracking-uri", type=given)
    p.add_argument("--out", type=given,
                   help="results file (default experiments/results/<NAME>.md)")
    p.set_defaults(handler="experiment")

    p = sub.add_parser("fidelity", help="does the proxy rank policies like the target training? "
                       "(writes experiments/results/<NAME>-fidelity.md)")
    p.add_argument("experiment", nargs="?", default="cifar10",
                   help="experiments/<NAME>.yaml or a path (default cifar10)")
    p.add_argument("--seeds", type=count(2),
                   help="seeds per policy and budget (default fidelity.seeds)")
    p.add_argument("--panel", nargs="+", metavar="POLICY", help="panel entries: baseline names, "
                   "RA(N,M), TA, optionally with [geometric], [colour] or [Op1,Op2]")
    p.add_argument("--data-dir", type=given,
                   help="folder with NAME-images.tar.gz archives")
    p.add_argument("--smoke", action="store_true", help="apply the experiment's smoke budget")
    p.add_argument("--out", type=given,
                   help="results file (default experiments/results/<NAME>-fidelity.md)")
    p.add_argument("--tracking-uri", type=given,
                   help="MLflow tracking URI")
    p.set_defaults(handler="fidelity")

    p = sub.add_parser("calibrate", help="pick the cheapest proxy that ranks policies as the "
                       "target does (writes experiments/results/<NAME>-calibration.yaml)")
    p.add_argument("experiment", help="experiments/<NAME>.yaml or a path")
    p.add_argument("--ladder", nargs="+", metavar="RUNG", help="rungs such as images/4, "
                   "images/4+epochs/2, width/2, side/2 or proxy (the syntax: calibrate.ladder; "
                   "default calibrate.ladder, else built in)")
    p.add_argument("--bar", type=float, help="Spearman a rung must reach (default calibrate.bar)")
    p.add_argument("--seeds", type=count(2), help="choosing seeds (default fidelity.seeds)")
    p.add_argument("--confirm-seeds", type=count(2),
                   help="fresh seeds that confirm the pick (default calibrate.confirm_seeds)")
    p.add_argument("--panel", nargs="+", metavar="POLICY", help="panel entries, as for fidelity")
    p.add_argument("--data-dir", type=given,
                   help="folder with NAME-images.tar.gz archives")
    p.add_argument("--smoke", action="store_true", help="apply the experiment's smoke budget")
    p.add_argument("--out", type=given,
                   help="the calibration file (default "
                   "experiments/results/<NAME>-calibration.yaml; .md and .json beside it)")
    p.set_defaults(handler="calibrate")
    for name in ("search", "worker", "validate", "experiment", "fidelity", "calibrate"):
        sub.choices[name].add_argument(
            "--allow-cpu", action="store_true",
            help="train on the CPU even where nvidia-smi lists a GPU the framework cannot use "
                 "(also POLICYSEARCH_ALLOW_CPU=1)")
    return parser
