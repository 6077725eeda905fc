"""The ``policysearch`` command.

Every problem the user can fix ends in one line on stderr and a non-zero exit; heavy imports
(TensorFlow, Keras, MLflow) happen only in the commands that need them, so ``show`` and
``export`` answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

from policysearch.cli.output import note, quiet_warnings, say, show_warning
from policysearch.cli.policy_commands import cmd_export, cmd_preview, cmd_show
from policysearch.errors import ConfigError, PolicySearchError

EXIT_INTERRUPTED = {15: 143, 2: 130}
ENV_SETTINGS = {"POLICYSEARCH_HEARTBEAT_SECONDS": 10, "POLICYSEARCH_MAX_DATA_BYTES": 4 << 30,
                "POLICYSEARCH_WORKERS": 1}
"""The integer ``POLICYSEARCH_*`` variables and their defaults, checked before any command."""
# Commands that train: SIGTERM/SIGINT is recorded and acted on at the next batch or trial
# (training.interrupts), and the process exits at the latest STOP_SECONDS after it.
LONG_COMMANDS = {"search", "worker", "validate", "experiment", "fidelity", "calibrate"}


def local_cores() -> int:
    """CPU cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def cap_workers(workers: int) -> int:
    """``workers``, at most one per core here (more only share the same cores)."""
    cores = local_cores()
    if workers > cores:
        note(f"--workers {workers} is more than the {cores} CPU core(s) here; "
              f"running {cores} worker(s)")
        return cores
    return workers


def announce_device(args: argparse.Namespace) -> None:
    """Print the device line; refuse ``--devices`` this machine lacks, and a GPU the framework
    cannot use (unless ``--allow-cpu``)."""
    from policysearch.training.device import check_devices, resolve

    quiet_warnings()
    # before any framework starts: each process takes the GPU memory it needs, not all of it,
    # so several trial processes share one GPU (--workers 4 --devices 0,0,0,0); a value the
    # user set stands
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    devices = getattr(args, "devices", None)
    if devices:
        check_devices(devices.split(","))
        # before any framework starts: this process is worker 0
        os.environ["CUDA_VISIBLE_DEVICES"] = devices.split(",")[0]
    if getattr(args, "allow_cpu", False):  # and for the workers this process starts
        os.environ["POLICYSEARCH_ALLOW_CPU"] = "1"
    say(resolve(allow_cpu=getattr(args, "allow_cpu", False)).line)


# ----------------------------------------------------------------------------------------------
# Commands


def cmd_search(args: argparse.Namespace) -> int:
    quiet_warnings()
    from policysearch.config.calibration import calibration_path, proxy_note
    from policysearch.config.experiment import load_experiment
    from policysearch.search.orchestrate import run_search
    from policysearch.study.spaces import load_space
    from policysearch.study.storage import default_storage
    from policysearch.tracking.client import mlflow_experiment_name

    args.workers = cap_workers(args.workers)
    if args.export:  # as typed: a trailing slash names a folder
        from policysearch.paths import check_writable_file

        check_writable_file(args.export, "export path")
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
    say(proxy_note(experiment.to_dict(), calibration_path(experiment.name, args.smoke),
                      experiment.source))
    fidelity = Path(args.fidelity) if args.fidelity else None
    if fidelity is not None and not fidelity.is_file():
        raise ConfigError(f"--fidelity {args.fidelity}: no such file (a `policysearch "
                          "fidelity` results JSON)")
    study_name = args.study_name or default_study_name(experiment, space.name, args.smoke)
    export_path = Path(args.export or f"policies/{study_name}.json")
    mlflow_experiment = args.mlflow_experiment or mlflow_experiment_name(experiment.dataset)
    policy = run_search(experiment, space, storage_url=args.storage or default_storage(),
                        study_name=study_name, export_path=export_path,
                        tracking_uri=args.tracking_uri, mlflow_experiment=mlflow_experiment,
                        workers=args.workers,
                        devices=args.devices.split(",") if args.devices else None,
                        system_metrics=args.system_metrics, fidelity_path=fidelity, log=say)
    if policy is not None:
        say(f"policy: {export_path}; test it against the baselines on the test split "
            f"(the splits and budgets are recorded in it): {validate_command(export_path)}")
        say(load_hint(policy, export_path))
    say(f"MLflow: run `make ui` and open the experiment {mlflow_experiment!r}")
    return 0


def validate_command(path: Path) -> str:
    """The command that validates the exported policy, as it runs from here."""
    import shlex

    return f"policysearch validate {shlex.quote(str(path))}"


def load_hint(policy: Any, path: Path) -> str:
    """How to use the exported file; crop+flip alone is a layer that adds nothing by itself."""
    if policy.type == "none":
        return ("the winner is crop+flip alone: keep your training's crop and flip, or load "
                f"them with policysearch.load_policy({str(path)!r}, base=True)")
    return (f"load it with policysearch.load_policy({str(path)!r}) (add base=True for the "
            "search's crop and flip), or policysearch.load_transform(...) outside Keras")


def default_study_name(experiment: Any, space: str, smoke: bool) -> str:
    """The experiment's name, or the dataset's for a folder searched with the defaults."""
    from policysearch.cli.args import safe_study_name
    from policysearch.data.datasets import slug

    name = experiment.name if experiment.source != "defaults" else slug(experiment.dataset)
    return safe_study_name(f"{name}-{space}" + ("-smoke" if smoke else ""))


def cmd_worker(args: argparse.Namespace) -> int:
    quiet_warnings()
    from policysearch.search.orchestrate import run_worker
    from policysearch.study.storage import default_storage

    run_worker(args.study_name, args.storage or default_storage(), args.tracking_uri,
               args.worker_id, deadline=args.deadline, log=say,
               wait_for_study=args.wait_for_study)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    quiet_warnings()
    from policysearch.config.experiment import experiment_from_dict, load_experiment, with_overrides
    from policysearch.evidence.validate import same_notes, table, validate
    from policysearch.policy.definition import read_policy

    policy = read_policy(args.policy)
    if args.out:  # before the training, not after it
        from policysearch.paths import check_writable_file

        check_writable_file(args.out, "--out")
    overrides = {"data.data_dir": args.data_dir, "data.val_size": args.val_size,
                 "data.selection_size": args.selection_size,
                 "data.image_size": args.image_size, "target.train_size": args.train_size,
                 "target.trainer.epochs": args.epochs, "validate.seeds": args.seeds,
                 "validate.flip_variants": args.flip_variants}
    stored = policy.source.get("experiment_config")
    if args.experiment or not isinstance(stored, dict):
        experiment = load_experiment(args.experiment, dataset=args.dataset or
                                     policy.source.get("dataset"), overrides=overrides)
    else:  # the experiment that found the policy, as it was: its splits and budgets
        origin = f"{args.policy} (source.experiment_config)"
        experiment = with_overrides(experiment_from_dict(stored, origin),
                                    {"dataset": args.dataset, **overrides}, origin)
        given = [f"--{k.split('.')[-1].replace('_', '-')}" for k, v in overrides.items()
                 if v is not None and k != "data.data_dir"]
        say(f"validate: the search's experiment {experiment.name!r} as recorded in "
               f"{args.policy} (splits, budgets, seeds)"
               + (f", with {' '.join(given)} from the command line" if given else ""))
    seeds = experiment.validate.seeds
    result = validate(policy, experiment, seeds=seeds, tracking_uri=args.tracking_uri,
                      log=say)
    say("")
    say(f"test accuracy on {result['test_size']} test images after {result['epochs']} epochs "
           f"on {result['train_size']} training images (the target budget; {seeds} seeds each, "
           "paired by seed):")
    say(table(result["summary"]))
    for line in same_notes(result["same"]):
        say(line)
    if args.out:
        import json

        from policysearch.paths import write_atomic

        write_atomic(Path(args.out), json.dumps(result, indent=2, default=str))
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    quiet_warnings()
    from policysearch.study.storage import default_storage
    from policysearch.tracking.sync import sync_mlflow

    sync_mlflow(args.study_name, args.storage or default_storage(), args.tracking_uri,
                log=say)
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    quiet_warnings()
    from policysearch.search.proof import run_experiment

    run_experiment(args.experiment, smoke=args.smoke, storage=args.storage,
                   tracking_uri=args.tracking_uri, out=args.out, data_dir=args.data_dir,
                   log=say)
    return 0


def cmd_fidelity(args: argparse.Namespace) -> int:
    """Train a panel of policies at the proxy and target budgets; report rank agreement."""
    quiet_warnings()
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
                     tracking_uri=args.tracking_uri, log=say,
                     command="policysearch " + shlex.join(sys.argv[1:]))
    except (Interrupted, KeyboardInterrupt) as stop:
        print(f"policysearch: fidelity interrupted; finished runs are saved in "
              f"{out.with_suffix('.json')}: run the same command to resume", file=sys.stderr,
              flush=True)
        return EXIT_INTERRUPTED.get(getattr(stop, "signum", signal.SIGINT), 130)
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Train the panel at the target and a ladder of cheaper budgets; pick the proxy."""
    quiet_warnings()
    import shlex
    import signal

    from policysearch.config.calibration import calibration_path
    from policysearch.config.experiment import load_experiment
    from policysearch.evidence.calibrate import run_calibration
    from policysearch.evidence.fidelity import DEFAULT_PANEL, build_panel

    if args.bar is not None and not -1.0 <= args.bar <= 1.0:
        raise PolicySearchError(f"--bar {args.bar}: a Spearman bar lies between -1 and 1")
    experiment = load_experiment(args.experiment, smoke=args.smoke, calibrated=False,
                                 overrides={"data.data_dir": args.data_dir,
                                            "fidelity.seeds": args.seeds})
    panel = build_panel(args.panel or experiment.fidelity.panel or DEFAULT_PANEL)
    out = Path(args.out) if args.out else calibration_path(experiment.name, args.smoke)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    try:
        run_calibration(experiment, panel, list(range(1, experiment.fidelity.seeds + 1)), out,
                        ladder=args.ladder, bar=args.bar, confirm=args.confirm_seeds,
                        command="policysearch " + shlex.join(sys.argv[1:]), log=say)
    except KeyboardInterrupt:
        print(f"policysearch: calibrate interrupted; finished runs are saved in "
              f"{out.with_suffix('.json')}: run the same command to resume", file=sys.stderr,
              flush=True)
        return 130
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
    "calibrate": cmd_calibrate,
}


MACHINE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES,
                            errno.EPERM})
"""Errors of the machine, not of the tool: one line, exit 1, no traceback."""


def main(argv: list[str] | None = None) -> int:
    from policysearch.cli import quiet
    from policysearch.cli.args import build_parser
    from policysearch.training import interrupts

    quiet.install()  # before any command imports TensorFlow: its first lines are not the tool's
    warnings.showwarning = show_warning
    parser = build_parser(__doc__.splitlines()[0])
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:  # a bad argument (one line printed), --help or --version
        return exit.code if isinstance(exit.code, int) else 2
    long_running = args.handler in LONG_COMMANDS
    if long_running:  # before anything heavy: a signal during start-up is not lost either
        interrupts.set_hard_stop(interrupts.stop_seconds())
    try:
        from policysearch.errors import env_int

        for name, default in ENV_SETTINGS.items():
            env_int(name, default)
        with interrupts.interruptible() if long_running else contextlib.nullcontext():
            if long_running:  # the first line names the device it trains on
                announce_device(args)
            return COMMANDS[args.handler](args)
    except PolicySearchError as err:
        print(f"policysearch: error: {err}", file=sys.stderr, flush=True)
        return err.exit_code
    except OSError as err:
        if err.errno not in MACHINE_ERRORS:
            raise  # a bug: keep its traceback
        # the machine refused a write (disk full, a file size limit, read-only, no
        # permission): the study is saved, and the same command resumes once it is fixed
        where = f"{err.filename}: " if err.filename else ""
        print(f"policysearch: error: {where}{err.strerror}; nothing half-written is left: free "
              "the space (or fix the permission) and run the same command again",
              file=sys.stderr, flush=True)
        return 1
    except BaseException as err:
        if isinstance(err, (interrupts.Interrupted, KeyboardInterrupt)):
            signum = getattr(err, "signum", signal.SIGINT)
            print(f"policysearch: interrupted ({signal.Signals(signum).name}); the study is "
                  "saved: run the same command to resume", file=sys.stderr, flush=True)
            return EXIT_INTERRUPTED.get(signum, 130)
        raise  # a bug: keep its traceback


if __name__ == "__main__":
    sys.exit(main())
