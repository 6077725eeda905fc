"""The study as a reviewer meets it: MLflow's web UI in a real headless Chromium.

A real ``mlflow server`` on a free port, a tiny ``policysearch search`` against it (a
subprocess), then Debian's ``chromium`` + ``chromium-driver`` driven by Selenium open the link
the search prints (the experiment's runs table in the study's saved view) and the study run's
page. ``POLICYSEARCH_SCREENSHOTS=docs/images`` also writes the README's two screenshots there.
Without the browser the test is skipped (one line naming the packages), unless
``POLICYSEARCH_REQUIRE_SERVICES=1`` (CI), where it fails in that line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REQUIRE, tiny_experiment, write_image_folder
from mlflow_server import MlflowServer

INSTALL = "apt-get install -y chromium chromium-driver"


def browser(width: int = 1500, height: int = 900) -> Any:
    """Headless Chromium through chromedriver. A missing one skips the test in one line naming
    the Debian packages, or fails in that line with ``POLICYSEARCH_REQUIRE_SERVICES=1`` (CI)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is missing: pip install -e '.[dev]'", pytrace=False)
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        missing = [name for name, found in (("chromium", binary), ("chromium-driver", driver))
                   if found is None]
        reason = (f"headless browser missing: install the Debian package(s) "
                  f"{' and '.join(missing)} (sudo {INSTALL})")
        if REQUIRE:  # CI: the browser test must run
            pytest.fail(f"{reason}; POLICYSEARCH_REQUIRE_SERVICES=1", pytrace=False)
        pytest.skip(reason)
    options = Options()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=options)


@pytest.fixture(scope="module")
def chrome() -> Iterator[Any]:
    """The browser, first: a missing one fails before any search is run."""
    driver = browser()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A finished tiny study (crop+flip and one searched trial, a 2-seed race) on a live
    server."""
    root = tmp_path_factory.mktemp("ui")
    write_image_folder(root / "data", classes=3, per_class=24, size=16,
                                 test_per_class=6)
    tiny_experiment(root / "tiny.yaml", Path("data"),
                    search={"trials": 1, "pruner": "none", "baselines": ["crop_flip"]})
    server = MlflowServer(root / "server").start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    # Relative paths, as a user types them (and as the screenshots show them).
    cmd = [sys.executable, "-m", "policysearch", "search", "--dataset", "data",
           "--experiment", "tiny.yaml", "--storage", "sqlite:///optuna.db",
           "--tracking-uri", server.uri, "--study-name", "ui", "--export", "p.json"]
    try:
        done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        yield {"root": root, "server": server, "out": done.stdout}
    finally:
        server.stop()


def wait_for(driver: Any, text: str, timeout: float = 60) -> str:
    """The page's visible text once it contains ``text``."""
    deadline = time.monotonic() + timeout
    body = ""
    while time.monotonic() < deadline:
        body = driver.find_element("tag name", "body").text
        if text in body:
            return body
        time.sleep(0.5)
    raise AssertionError(f"{text!r} not shown within {timeout}s; the page shows:\n{body[:3000]}")


def click_if_present(driver: Any, selector: str) -> None:
    for element in driver.find_elements("css selector", selector):
        if element.is_displayed():
            element.click()
            time.sleep(0.5)
            return


def screenshot(driver: Any, name: str, tmp: Path) -> None:
    folder = os.environ.get("POLICYSEARCH_SCREENSHOTS")
    target = Path(folder) if folder else tmp
    target.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(target / name))


def test_ui_shows_the_trials_table_and_the_decision(chrome: Any, study: dict[str, Any]) -> None:
    import optuna
    from mlflow import MlflowClient

    root, server = study["root"], study["server"]
    optuna_study = optuna.load_study(study_name="ui", storage=f"sqlite:///{root}/optuna.db")
    record = {k[3:]: v for k, v in optuna_study.user_attrs.items() if k.startswith("ps.")}
    client = MlflowClient(tracking_uri=server.uri)
    parent = client.get_run(record["mlflow_parent_run_id"])
    trials = client.search_runs([parent.info.experiment_id],
                                f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and "
                                "tags.`policysearch.role` != 'race'")
    trial_names = [r.info.run_name for r in trials]
    assert len(trial_names) == 2  # crop+flip and the searched trial
    # What only the search itself logs (it has the images): sample grids and the summary.
    for run in trials:
        assert "samples.png" in {a.path for a in client.list_artifacts(run.info.run_id)}
    names = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"exported_policy_epochs.png", "optimization_history.png", "policy.json",
            "trials.csv", "experiment.yaml"} <= names
    exported = json.loads((root / "p.json").read_text())
    assert exported["source"]["mlflow_run_id"] == parent.info.run_id
    # The link the search printed: the study's runs table.
    [table_url] = re.findall(r"trials table: (\S+)", study["out"])
    assert table_url.startswith(server.uri)

    driver = chrome
    driver.get(table_url)
    body = wait_for(driver, trial_names[0])
    click_if_present(driver, "[data-component-id='mlflow.assistant.chat_panel.close']")
    body = wait_for(driver, trial_names[1])
    # The runs table (not the GenAI pages), with the trials and their policy columns.
    assert "Token Usage" not in body  # not the GenAI overview
    for column in ("val_accuracy", "num_ops", "magnitude", "ops"):
        assert column in body, column
    assert "Group: search" in body and "Group: baseline" in body
    assert "crop+flip" in body
    screenshot(driver, "mlflow-trials-table.png", root)

    run_url = f"{server.uri}/#/experiments/{parent.info.experiment_id}/runs/" \
              f"{parent.info.run_id}?workflowType=machine_learning"
    driver.get(run_url)
    sentence = record["decision"]["sentence"]
    first = sentence.split("`")[0].strip()  # inline code renders without its backticks
    body = wait_for(driver, first)
    click_if_present(driver, "[data-component-id='mlflow.assistant.chat_panel.close']")
    click_if_present(driver, "[data-testid='show-comment-toggle']")
    body = wait_for(driver, "Using the exported policy")
    assert sentence.replace("`", "") in body.replace("\n", " ")
    assert "load_transform" in body and "Reproducing the study" in body
    assert "optimization_history.png" in body
    screenshot(driver, "mlflow-study-run.png", root)


@pytest.mark.parametrize("require", ["0", "1"])
def test_a_missing_browser_is_one_line_naming_the_packages(require: str, tmp_path: Path) -> None:
    """On a machine without Chromium (no PATH to it) the browser test is skipped in one line,
    or, under ``POLICYSEARCH_REQUIRE_SERVICES=1``, fails in that line (issue 23)."""
    env = {**os.environ, "PATH": str(tmp_path), "POLICYSEARCH_REQUIRE_SERVICES": require}
    node = f"{Path(__file__)}::test_ui_shows_the_trials_table_and_the_decision"
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                             node], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    lines = [line for line in result.stdout.splitlines() if "headless browser missing" in line]
    assert len(lines) == 1, result.stdout
    assert "chromium and chromium-driver" in lines[0] and "apt-get install" in lines[0]
    if require == "1":
        assert result.returncode == 1 and "1 error" in result.stdout, result.stdout
        assert lines[0].endswith("POLICYSEARCH_REQUIRE_SERVICES=1")
    else:
        assert result.returncode == 0 and "1 skipped" in result.stdout, result.stdout
        assert lines[0].startswith("SKIPPED [1]")
