"""Several workers on one study in a real PostgreSQL: exact budgets, dead workers, signals.

Every worker is a real ``policysearch`` process (TensorFlow, Optuna on PostgreSQL, MLflow on
SQLite in a temporary folder). ``POLICYSEARCH_HEARTBEAT_SECONDS=1`` makes a dead worker's trial
stale after 3 seconds instead of 30. Each test uses its own study (a uuid) and deletes it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import tiny_experiment, write_image_folder

BASELINES = ["crop_flip", "randaugment_n2_m9"]
TRIALS = 2
BUDGET = len(BASELINES) + TRIALS
FINISHED = ("COMPLETE", "PRUNED")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 3-class 16x16 dataset, a way to write experiment files for it, a shared MLflow store."""
    root = tmp_path_factory.mktemp("distributed")
    dataset = write_image_folder(root / "data", classes=3, per_class=24, size=16,
                                 test_per_class=6)

    def experiment(name: str, **sections: dict[str, Any]) -> Path:
        sections = {**sections, "search": {"trials": TRIALS, "baselines": BASELINES,
                                           **sections.get("search", {})},
                    "race": {"top_k": 1, "min_seeds": 2, "max_seeds": 2,
                             **sections.get("race", {})}}
        return tiny_experiment(root / f"{name}.yaml", dataset, **sections)

    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow",
               POLICYSEARCH_CACHE_DIR=str(root / "cache"), POLICYSEARCH_HEARTBEAT_SECONDS="1")
    return {"root": root, "experiment": experiment, "config": experiment("tiny"), "env": env,
            "tracking": f"sqlite:///{root}/mlflow.db"}


@pytest.fixture
def study_name(postgres_url: str) -> Iterator[str]:
    """A fresh study name; the study is deleted afterwards."""
    import optuna

    from policysearch.study.storage import normalize_url

    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    with contextlib.suppress(KeyError):  # never created
        optuna.delete_study(study_name=name, storage=normalize_url(postgres_url))


def _cli(tiny: dict[str, Any], *args: str) -> list[str]:
    return [sys.executable, "-m", "policysearch", *args]


def run_cli(tiny: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_cli(tiny, *args), cwd=tiny["root"], env=tiny["env"],
                          capture_output=True, text=True, timeout=1200)


def start_cli(tiny: dict[str, Any], log: Path, *args: str) -> subprocess.Popen[str]:
    """Start a command in the background; stdout and stderr go to ``log`` and ``log.err``."""
    return subprocess.Popen(_cli(tiny, *args), cwd=tiny["root"], env=tiny["env"], text=True,
                            stdout=log.open("w"), stderr=log.with_suffix(".err").open("w"))


def search_args(tiny: dict[str, Any], url: str, name: str, config: Path | None = None,
                *extra: str) -> list[str]:
    return ["search", "--experiment", str(config or tiny["config"]), "--storage", url,
            "--study-name", name, "--export", str(tiny["root"] / f"{name}.json"),
            "--tracking-uri", tiny["tracking"], *extra]


def trials_of(url: str, name: str) -> list[Any]:
    import optuna

    from policysearch.study.storage import normalize_url

    return optuna.load_study(study_name=name, storage=normalize_url(url)).get_trials()


def wait_for(what: str, check: Callable[[], Any], proc: subprocess.Popen[str],
             deadline_s: float = 900) -> Any:
    """Poll ``check`` until it returns something truthy; fail if ``proc`` exits first."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            found = check()
        except KeyError:  # the study does not exist yet
            found = None
        if found:
            return found
        if proc.poll() is not None:
            pytest.fail(f"the process exited ({proc.returncode}) before {what}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def assert_exact_budget(trials: list[Any], budget: int) -> list[Any]:
    """The finished trials are exactly the budget, each baseline once; none left running."""
    finished = [t for t in trials if t.state.name in FINISHED]
    assert len(finished) == budget, [(t.number, t.state.name) for t in trials]
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    names = sorted(t.user_attrs["ps.baseline"] for t in finished if t.user_attrs.get("ps.baseline"))
    assert names == sorted(BASELINES)
    return finished


def test_two_workers_finish_exactly_the_budget_and_the_soak_sees_a_planted_fault(
        tiny: dict[str, Any], postgres_url: str, study_name: str) -> None:
    """Two processes (the search and a spawned worker) share one study: the budget is exact,
    each process pinned to its device; their random search proposes the study seed's draws
    0, 1, 2, what one process alone proposes, so the soak (``make soak``) can hold a faulted
    search to the undisturbed one's decision; its check of the searched trials fails on a
    planted duplicate and on a planted loss."""
    import optuna
    import sqlalchemy

    from policysearch.config.samplers import DRAW, SAMPLERS
    from policysearch.evidence.soak_checks import outcome, searched_once
    from policysearch.study.spaces import load_space
    from policysearch.study.storage import normalize_url

    trials = 3  # 2 baselines + 3 searched (two processes: local workers are capped at the
    # cores, and CI has two); a machine whose driver lists six GPUs (a stand-in nvidia-smi),
    # the CPU build on purpose
    gpus = tiny["root"] / "six-gpus"
    gpus.mkdir(exist_ok=True)
    (gpus / "nvidia-smi").write_text("#!/bin/sh\n" + "".join(
        f'echo "GPU {i}: NVIDIA H100 (UUID: GPU-{i})"\n' for i in range(6)))
    (gpus / "nvidia-smi").chmod(0o755)
    env = {**tiny["env"], "PATH": f"{gpus}{os.pathsep}{tiny['env']['PATH']}"}
    config = tiny["experiment"]("random", search={"sampler": "random", "seed": 5})
    proc = subprocess.run(_cli(tiny, *search_args(tiny, postgres_url, study_name, config,
                                                  "--workers", "2", "--trials", str(trials),
                                                  "--devices", "4,5", "--allow-cpu")),
                          cwd=tiny["root"], env=env, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    done = trials_of(postgres_url, study_name)
    assert len(done) == len(BASELINES) + trials, [(t.number, t.state.name) for t in done]
    assert all(t.state.name in FINISHED for t in done)
    assert_exact_budget(done, len(BASELINES) + trials)
    # Every worker came up, joined the same study and stopped at the budget; what each says
    # it ran is what the study records it ran.
    by_worker: dict[str, int] = {}
    for t in done:
        by_worker[t.user_attrs["ps.worker"]] = by_worker.get(t.user_attrs["ps.worker"], 0) + 1
    assert f"[w1] done: ran {by_worker.get('w1', 0)} trial(s)" in proc.stdout
    # --devices pins every process, the search's own included, one device each in turn.
    pinned = {"w0": "4", "w1": "5"}
    assert all(t.user_attrs["ps.device"] == pinned[t.user_attrs["ps.worker"]] for t in done)
    export = tiny["root"] / f"{study_name}.json"
    assert export.exists()

    # The searched proposals are draws 0-2 of seed 5, whichever process drew each: what one
    # process alone proposes (and three different policies).
    searched = sorted((t.user_attrs[DRAW], t.params) for t in done
                      if not t.user_attrs.get("ps.baseline"))
    alone = optuna.create_study(sampler=SAMPLERS["random"](5), direction="maximize")
    space = load_space("randaugment_subset")  # the tiny experiment's
    expected = []
    for draw in range(trials):
        trial = alone.ask()
        space.sample(trial)
        expected.append((draw, trial.params))
        alone.tell(trial, 0.5)
    assert searched == expected
    assert len({tuple(sorted(p.items())) for _, p in searched}) == trials

    reference = outcome(postgres_url, study_name, export)
    assert reference["draws"] == [0, 1, 2] and reference["decision"][0]
    assert searched_once(reference, reference) == (True, "")
    # planted duplicate: draw 1 finished a second time
    study = optuna.load_study(study_name=study_name, storage=normalize_url(postgres_url))
    twin = next(t for t in done if t.user_attrs.get(DRAW) == 1)
    study.add_trial(optuna.create_trial(params=twin.params, distributions=twin.distributions,
                                        user_attrs=twin.user_attrs, value=twin.value))
    held, why = searched_once(outcome(postgres_url, study_name, export), reference)
    assert not held and why == "searched draws finished more than once: [1]"
    # planted loss: draw 2's trial (and the planted twin) failed behind the search's back
    engine = sqlalchemy.create_engine(normalize_url(postgres_url))
    lost = [t._trial_id for t in study.get_trials() if t.user_attrs.get(DRAW) in (1, 2)][1:]
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE trials SET state = 'FAIL' WHERE trial_id = ANY(:i)"),
                     {"i": lost})
    engine.dispose()
    held, why = searched_once(outcome(postgres_url, study_name, export), reference)
    assert not held and why == "searched draws lost: [2]", why


def test_timeout_stops_every_worker(tiny: dict[str, Any], postgres_url: str,
                                    study_name: str) -> None:
    # a budget far beyond the time limit: both processes stop claiming at the deadline
    proc = run_cli(tiny, *search_args(tiny, postgres_url, study_name, None, "--workers", "2",
                                      "--trials", "200", "--timeout", "0.5"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("time budget reached") == 2, proc.stdout
    trials = trials_of(postgres_url, study_name)
    assert 2 <= len(trials) < 200  # the deadline stopped them, not the trial budget
    assert not [t for t in trials if t.state.name == "RUNNING"]


def test_killed_worker_trial_is_failed_and_retried(tiny: dict[str, Any], postgres_url: str,
                                                   study_name: str, tmp_path: Path) -> None:
    from policysearch.config.experiment import load_experiment
    from policysearch.data.splits import load_splits
    from policysearch.study.spaces import load_space
    from policysearch.study.store import new_record, open_study

    os.environ["POLICYSEARCH_CACHE_DIR"] = tiny["env"]["POLICYSEARCH_CACHE_DIR"]
    experiment = load_experiment(str(tiny["config"]))
    splits = load_splits(experiment)
    record = new_record(experiment, load_space(experiment.search.space),
                        fingerprint=splits.fingerprint, image_shape=splits.image_shape,
                        classes=splits.classes, total_trials=BUDGET)
    open_study(postgres_url, study_name, record, experiment=experiment)
    victim = start_cli(tiny, tmp_path / "victim.log", "worker", "--study-name", study_name,
                       "--storage", postgres_url, "--worker-id", "victim")
    try:
        claimed = wait_for("the victim claims a trial", lambda: [
            t for t in trials_of(postgres_url, study_name)
            if t.state.name == "RUNNING" and t.user_attrs.get("ps.worker") == "victim"], victim)
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=60) == -signal.SIGKILL
    finally:
        if victim.poll() is None:
            victim.kill()
    lost = claimed[0].number

    # Another worker (the search, resumed) fails the silent trial, retries it, and finishes
    # exactly the budget.
    proc = run_cli(tiny, *search_args(tiny, postgres_url, study_name))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"trial {lost} lost its worker" in proc.stdout
    trials = trials_of(postgres_url, study_name)
    assert trials[lost].state.name == "FAIL"
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == lost]
    assert len(retries) == 1 and retries[0].state.name in FINISHED
    assert retries[0].user_attrs["ps.worker"] == "w0"
    assert retries[0].user_attrs.get("ps.baseline") == trials[lost].user_attrs.get("ps.baseline")
    # The retry logs into a run of its own, never into the dead trial's run.
    assert retries[0].user_attrs["ps.mlflow_run_id"] != trials[lost].user_attrs.get(
        "ps.mlflow_run_id")
    # The search waited for the held trial instead of racing and exporting around it.
    assert proc.stdout.index(f"trial {lost} lost its worker") < proc.stdout.index("race on")
    assert_exact_budget(trials, BUDGET)


# A loaded machine (two cores shared with other jobs) can take minutes per search: generous
# limits, so that the test fails on a fault and not on the machine's load.
@pytest.mark.timeout(1800)
def test_sigterm_interrupts_cleanly_and_resumes(tiny: dict[str, Any], postgres_url: str,
                                                study_name: str, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    args = search_args(tiny, postgres_url, study_name)
    search = start_cli(tiny, tmp_path / "search.log", *args)
    try:
        def one_done_one_running() -> bool:
            states = [t.state.name for t in trials_of(postgres_url, study_name)]
            return "COMPLETE" in states and "RUNNING" in states

        wait_for("a finished and a running trial", one_done_one_running, search)
        search.send_signal(signal.SIGTERM)
        code = search.wait(timeout=120)
    finally:
        if search.poll() is None:
            search.kill()
    stderr = (tmp_path / "search.err").read_text()
    assert code == 143, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    trials = trials_of(postgres_url, study_name)
    assert not [t for t in trials if t.state.name == "RUNNING"]
    stopped = [t for t in trials if "interrupted" in (t.user_attrs.get("ps.fail_reason") or "")]
    assert len(stopped) == 1 and stopped[0].state.name == "FAIL"
    # ... and queued again, so that the resumed search runs it (a baseline above all).
    # (a queued trial holds the params it will run as Optuna's fixed params: a searched one's
    # are the interrupted trial's, a baseline's are none)
    queued = [t for t in trials if t.state.name == "WAITING"]
    assert len(queued) == 1
    assert queued[0].system_attrs.get("fixed_params", {}) == stopped[0].params
    assert queued[0].user_attrs.get("ps.baseline") == stopped[0].user_attrs.get("ps.baseline")

    import optuna

    from policysearch.study.storage import normalize_url

    attrs = optuna.load_study(study_name=study_name,
                              storage=normalize_url(postgres_url)).user_attrs
    client = MlflowClient(tracking_uri=tiny["tracking"])
    parent = client.get_run(attrs["ps.mlflow_parent_run_id"])
    assert parent.info.status == "KILLED"
    runs = client.search_runs([parent.info.experiment_id],
                              f"tags.`optuna.study_name` = '{study_name}'")
    assert runs and not [r for r in runs if r.info.status == "RUNNING"]

    # The same command resumes and finishes the budget; the interrupted trial does not count.
    again = run_cli(tiny, *args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resumed" in again.stdout
    assert_exact_budget(trials_of(postgres_url, study_name), BUDGET)
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"


# The search, with a test-only gc callback that sends SIGTERM to its own process the first time
# the garbage collector runs after training has started: the handler runs inside the callback,
# where an exception raised by it would be printed as "Exception ignored" and dropped.
SIGNAL_IN_GC = """
import gc, os, signal, sys
from policysearch.training import interrupts, trainer
armed = []
def callback(phase, info):
    if phase == "start" and armed == [True]:
        armed.append(True)
        os.kill(os.getpid(), signal.SIGTERM)
        sum(range(1000))  # the handler runs here, inside the gc callback
        print(f"signal handled inside a gc callback: {interrupts.requested()}", flush=True)
gc.callbacks.append(callback)
train = trainer.Trainer.train
def arming(self, *args, **kwargs):
    if not armed:
        armed.append(True)
        gc.collect()
    return train(self, *args, **kwargs)
trainer.Trainer.train = arming
from policysearch.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_inside_a_gc_callback_still_stops_the_search(tiny: dict[str, Any],
                                                             postgres_url: str,
                                                             study_name: str) -> None:
    args = search_args(tiny, postgres_url, study_name)
    proc = subprocess.run([sys.executable, "-c", SIGNAL_IN_GC, *args], cwd=tiny["root"],
                          env=tiny["env"], capture_output=True, text=True, timeout=600)
    assert f"signal handled inside a gc callback: {int(signal.SIGTERM)}" in proc.stdout
    assert proc.returncode == 143, proc.stdout + proc.stderr
    assert "Exception ignored" not in proc.stderr and "Traceback" not in proc.stderr
    trials = trials_of(postgres_url, study_name)
    assert not [t for t in trials if t.state.name == "RUNNING"]
    stopped = [t for t in trials if "interrupted" in (t.user_attrs.get("ps.fail_reason") or "")]
    assert [t.number for t in stopped] == [0]  # the first trial, at its first batch
    # queued again for the next run (which test_sigterm_interrupts_cleanly_and_resumes runs)
    queued = [t for t in trials if t.state.name == "WAITING"]
    assert sorted(t.user_attrs.get("ps.baseline") for t in queued) == sorted(BASELINES)


# The search, with a test-only stall: the first trial's training sends SIGTERM to its own process
# and then sleeps in one long call that never returns to a safe point (as a slow compile on a
# loaded machine does), so only the hard stop (POLICYSEARCH_STOP_SECONDS=2) ends it.
STUCK_AFTER_SIGNAL = """
import os, signal, sys, time
from policysearch.training import trainer
def stuck(self, *args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(600)
trainer.Trainer.train = stuck
from policysearch.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_the_hard_stop_still_records_the_running_trial(tiny: dict[str, Any], postgres_url: str,
                                                       study_name: str) -> None:
    args = search_args(tiny, postgres_url, study_name)
    env = {**tiny["env"], "POLICYSEARCH_STOP_SECONDS": "2"}
    proc = subprocess.run([sys.executable, "-c", STUCK_AFTER_SIGNAL, *args], cwd=tiny["root"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 143, proc.stdout + proc.stderr
    assert "still running 2 s after the signal; recording the running trial" in proc.stderr
    assert "Traceback" not in proc.stderr
    # no heartbeat grace needed: the trial is failed as interrupted and queued again at once
    trials = trials_of(postgres_url, study_name)
    assert not [t for t in trials if t.state.name == "RUNNING"], [t.state for t in trials]
    stopped = [t for t in trials if "interrupted" in (t.user_attrs.get("ps.fail_reason") or "")]
    assert [(t.number, t.state.name) for t in stopped] == [(0, "FAIL")]
    queued = [t for t in trials if t.state.name == "WAITING"]
    assert sorted(t.user_attrs.get("ps.baseline") for t in queued) == sorted(BASELINES)


def test_diverging_trial_fails_with_its_reason(tiny: dict[str, Any], postgres_url: str,
                                               study_name: str) -> None:
    # A user's network whose logits overflow float32 (tests/models/tiny_net.py): the loss is
    # NaN. (A learning rate of 1e30 did this before; it is now refused before any trial.)
    config = tiny["experiment"]("diverge", trainer={"model": {"name": "models.tiny_net:diverging"}},
                                search={"baselines": ["crop_flip"], "max_failures": 0})
    proc = subprocess.run(_cli(tiny, *search_args(tiny, postgres_url, study_name, config)),
                          cwd=tiny["root"], capture_output=True, text=True, timeout=1200,
                          env={**tiny["env"], "PYTHONPATH": str(Path(__file__).parent)})
    assert "stopping: 1 trials failed" in proc.stdout, proc.stdout + proc.stderr
    trials = trials_of(postgres_url, study_name)
    assert len(trials) == 1 and trials[0].state.name == "FAIL"
    reason = trials[0].user_attrs["ps.fail_reason"]
    assert "training loss became" in reason, reason
    # Reported: on the trial's progress line, then one line saying why nothing was exported.
    assert f"trial 0 fail ({reason})" in proc.stdout
    assert "stopping: 1 trials failed" in proc.stdout
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no trial completed" in proc.stderr.strip().splitlines()[-1]
    # The MLflow trial run carries the reason too.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tiny["tracking"])
    runs = client.search_runs(
        [client.get_experiment_by_name("policysearch-data").experiment_id],
        f"tags.`optuna.study_name` = '{study_name}' and tags.`policysearch.role` = 'baseline'")
    assert [(r.info.status, r.data.tags.get("fail_reason")) for r in runs] == [("FAILED", reason)]
