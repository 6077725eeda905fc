"""``policysearch fidelity``: the panel, the statistics, and the command end to end on real
CIFAR-10 images (interrupted, resumed, logged to MLflow, never reading the test split)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from policysearch.errors import ConfigError
from policysearch.evidence.fidelity import (
    DEFAULT_PANEL,
    OP_GROUPS,
    PanelEntry,
    build_panel,
    parse_entry,
    resolvable,
)
from policysearch.evidence.stats import t_quantile
from policysearch.policy.definition import randaugment, trivialaugment

PANEL = ["crop_flip", "RA(1,5)", "RA(2,9)[geometric]", "TA[colour]"]
SEEDS = 2


def test_panel_entries() -> None:
    assert parse_entry("RA(2,9)") == randaugment(2, 9)
    assert parse_entry("ra(1, 5)") == randaugment(1, 5)
    assert parse_entry("TA") == trivialaugment()
    geometric = parse_entry("RA(2,9)[geometric]")
    assert set(geometric.ops) == {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"}
    assert set(parse_entry("TA[colour]").ops) == set(OP_GROUPS["colour"])
    assert not set(OP_GROUPS["colour"]) & set(geometric.ops)
    assert parse_entry("TA[Rotate, Contrast]").ops == ("Rotate", "Contrast")
    panel = build_panel(DEFAULT_PANEL)
    assert len(panel) >= 8 and len({e.policy.key() for e in panel}) == len(panel)


@pytest.mark.parametrize(("entries", "needle"), [
    (["crop_flip", "RA(2,9)", "randaugment_n2_m9"], "same policy as 'RA(2,9)'"),
    (["crop_flip", "RA(2)", "TA"], "'RA(2)' is not a panel entry"),
    (["crop_flip", "TA[Wobble]", "RA(1,2)"], "Wobble"),
    (["crop_flip", "RA(9,9)", "TA"], "fidelity.panel[1]"),
    (["crop_flip", "TA"], "at least 3"),
])
def test_bad_panels_are_config_errors(entries: list[str], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_panel(entries)
    assert needle in str(err.value)


def test_resolvable_difference_is_the_mean_one_sided_half_width() -> None:
    panel = [PanelEntry(name, parse_entry(name)) for name in ("crop_flip", "TA", "RA(1,5)")]
    acc = {("crop_flip", "proxy"): {1: 0.50, 2: 0.52, 3: 0.51},
           ("TA", "proxy"): {1: 0.53, 2: 0.53, 3: 0.55},
           ("RA(1,5)", "proxy"): {1: 0.49, 2: 0.55, 3: 0.50}}
    t = t_quantile(0.95, 2)
    widths = []
    for a, b in (("crop_flip", "TA"), ("crop_flip", "RA(1,5)"), ("TA", "RA(1,5)")):
        diffs = [acc[(a, "proxy")][s] - acc[(b, "proxy")][s] for s in (1, 2, 3)]
        mean = sum(diffs) / 3
        sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
        widths.append(t * sd / math.sqrt(3))
    out = resolvable(panel, acc, "proxy")
    assert out["pairs"] == 3
    assert out["mean"] == pytest.approx(sum(widths) / 3)
    assert out["median"] == pytest.approx(sorted(widths)[1])


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "policysearch", "fidelity", *args]


@pytest.mark.slow
def test_cost_ratio_only_from_seconds_of_one_machine() -> None:
    # proxy runs borrowed from a calibration on one machine, target runs from another: the
    # analysis states no measured ratio (the run writes the estimate beside it), and one
    # machine's seconds still make the ratio when both budgets ran there
    from policysearch.evidence.fidelity import analyse

    panel = build_panel(["crop_flip", "RA(1,5)", "RA(2,9)"])

    def runs(budget: str, cpu: str | None, seconds: float) -> list[dict]:
        return [{"key": e.policy.key(), "budget": budget, "seed": s, "seconds": seconds,
                 "accuracy": 0.5 + 0.1 * i + 0.01 * s, "curve": {"2": 0.4},
                 **({"cpu": cpu} if cpu else {})}
                for i, e in enumerate(panel) for s in (1, 2)]

    apart = analyse(panel, runs("proxy", "fast", 20.0) + runs("target", None, 60.0), [1, 2])
    assert math.isnan(apart["cost_ratio_median"]) and math.isnan(apart["cost_ratio"])
    assert apart["cost_timed_apart"] and apart["spearman"] == pytest.approx(1.0)
    same = analyse(panel, runs("proxy", "fast", 20.0) + runs("target", "fast", 40.0), [1, 2])
    assert same["cost_ratio_median"] == pytest.approx(0.5) and not same["cost_timed_apart"]


def test_fidelity_end_to_end_interrupted_resumed_without_test_split(
        tmp_path: Path, data_dir: Path) -> None:
    from policysearch.data.datasets import cache_dir, load_part

    # a fresh cache holding only the decoded training part: a test part would appear here
    load_part("cifar10", "train", data_dir)
    cache = tmp_path / "cache"
    cache.mkdir()
    for path in cache_dir().glob("cifar10-*-train.npz"):
        (cache / path.name).symlink_to(path)
    config = {
        "name": "tiny", "dataset": "cifar10",
        "data": {"train_size": 40, "val_size": 60, "selection_size": 20,
                 "data_dir": str(data_dir)},
        "base_augment": {"crop_padding": 2, "flip": True},
        "trainer": {"epochs": 2, "batch_size": 20, "lr": 0.05, "warmup_epochs": 0,
                    "validate_every": 2, "model": {"name": "cnn", "widths": [8, 16]}},
        # the target trains the residual network: the proxy may be a smaller model
        "target": {"train_size": 80, "trainer": {"model": {"name": "resnet", "widths": [8, 16]}}},
        "fidelity": {"seeds": SEEDS, "panel": PANEL},
    }
    experiment = tmp_path / "tiny.yaml"
    experiment.write_text(yaml.safe_dump(config))
    out = tmp_path / "results" / "tiny-fidelity.md"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "POLICYSEARCH_CACHE_DIR": str(cache), "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = _cli(str(experiment), "--out", str(out), "--tracking-uri", uri)
    total = len(PANEL) * 2 * SEEDS

    # interrupted (Ctrl-C) after its third run: a clean exit, the finished runs saved
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith(f"fidelity: [3/{total}]"):
                proc.send_signal(signal.SIGINT)
                break
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "run the same command to resume" in stderr
    saved = json.loads(out.with_suffix(".json").read_text())["runs"]
    assert 3 <= len(saved) < total and not out.exists()

    # resumed: trains only what is missing, then writes the results
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{total - len(saved)} runs to train, {len(saved)} saved" in done.stdout
    assert "over 2 invocation(s) (the last: " in out.read_text()
    assert f"{total - len(saved)} runs trained, {len(saved)} reused" in out.read_text()

    report = out.read_text()
    for needle in ("## What was compared", "## Agreement", "## Per policy", "Spearman ρ",
                   "Kendall τ", "90 % seed-resampling range", "cost ratio proxy / target",
                   "seed std, proxy", "smallest paired difference the proxy resolves",
                   "gain over crop_flip, proxy (95 % lower bound)", "resnet 8/16",
                   "The test split is never read", "Machine:", "commit:", "Wall time:"):
        assert needle in report, needle
    for name in PANEL:
        assert f"| `{name}` |" in report
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    raw = json.loads(out.with_suffix(".json").read_text())
    assert len(raw["runs"]) == total
    assert {(r["budget"], r["seed"]) for r in raw["runs"]} == {
        (b, s) for b in ("proxy", "target") for s in range(1, SEEDS + 1)}
    analysis = raw["analysis"]
    assert -1 <= analysis["spearman"] <= 1 and -1 <= analysis["kendall"] <= 1
    low, high = analysis["spearman_interval"]
    assert -1 <= low <= high <= 1
    assert analysis["cost_ratio"] > 0 and analysis["seed_std"]["proxy"] >= 0
    # the proxy validated once, at its last epoch: one rung, the end of the run
    assert [(r["epoch"], r["final"]) for r in analysis["rungs"]] == [(2, True)]
    assert len(analysis["rungs"][0]["single_seed_spearman"]) == SEEDS
    assert "## Agreement at the pruner's rungs" in report and "| 2 (end) | " in report
    by_policy = {row["policy"]: row for row in analysis["policies"]}
    assert "gain" not in by_policy["crop_flip"]["proxy"]
    assert set(by_policy["TA[colour]"]["target"]["by_seed"]) == {"1", "2"}

    # the test split was never loaded (no decoded test part in the cache)
    assert not list(cache.glob("*-test.npz"))
    assert list(cache.glob("*-train.npz"))

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    mlflow_experiment = client.get_experiment_by_name("policysearch-cifar10")
    runs = client.search_runs([mlflow_experiment.experiment_id],
                              filter_string="attributes.run_name = 'fidelity tiny'")
    assert len(runs) == 1  # the interrupted invocation logs nothing
    assert runs[0].data.metrics["spearman"] == pytest.approx(analysis["spearman"])
    assert "cost_ratio" in runs[0].data.metrics
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert "tiny-fidelity.png" in artifacts


def test_unknown_panel_entry_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(_cli("cifar10", "--panel", "crop_flip", "RA(2,9)", "Wobble"),
                            cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("policysearch")]
    assert lines == [lines[-1]] and "'Wobble' is not a panel entry" in lines[0]
    assert "Traceback" not in result.stderr


def test_proxy_that_is_the_target_trains_each_run_once(tmp_path: Path, data_dir: Path) -> None:
    from policysearch.config.experiment import load_experiment
    from policysearch.evidence.fidelity_runs import proxy_is_target

    # the shipped digits experiment scores trials at the target; CIFAR-10's proxy is cheaper
    assert proxy_is_target(load_experiment("mnist"))
    assert not proxy_is_target(load_experiment("cifar10"))

    config = {
        "name": "twins", "dataset": "cifar10",
        "data": {"train_size": 40, "val_size": 40, "selection_size": 20,
                 "data_dir": str(data_dir)},
        "trainer": {"epochs": 1, "batch_size": 20, "warmup_epochs": 0, "validate_every": 1,
                    "model": {"name": "cnn", "widths": [8]}},
        "target": {"train_size": 40, "trainer": {"epochs": 1}},
        "fidelity": {"seeds": 2, "panel": ["crop_flip", "RA(2,9)", "TA"]},
    }
    experiment = tmp_path / "twins.yaml"
    experiment.write_text(yaml.safe_dump(config))
    out = tmp_path / "twins-fidelity.md"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(_cli(str(experiment), "--out", str(out), "--tracking-uri",
                               f"sqlite:///{tmp_path / 'mlflow.db'}"),
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "the proxy is the target" in done.stdout and "6 runs to train" in done.stdout
    runs = json.loads(out.with_suffix(".json").read_text())["runs"]
    assert len(runs) == 3 * 2 * 2 and sum("same_as" in r for r in runs) == 6
    by_key = {(r["policy"], r["budget"], r["seed"]): r["accuracy"] for r in runs}
    analysis = json.loads(out.with_suffix(".json").read_text())["analysis"]
    assert analysis["proxy_is_target"] and analysis["spearman_interval"] == [1.0, 1.0]
    assert "ranks policies as the target does by construction" in out.read_text()
    for policy in ("crop_flip", "RA(2,9)", "TA"):
        for seed in (1, 2):
            assert by_key[(policy, "proxy", seed)] == by_key[(policy, "target", seed)]

    # a new proxy (two epochs) keeps the target's saved runs and trains only its own
    config["trainer"]["epochs"] = 2
    experiment.write_text(yaml.safe_dump(config))
    again = subprocess.run(_cli(str(experiment), "--out", str(out), "--tracking-uri",
                                f"sqlite:///{tmp_path / 'mlflow.db'}"),
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "the proxy changed; reusing the target runs saved in" in again.stdout
    assert "6 runs to train, 6 saved" in again.stdout
    rerun = {(r["policy"], r["budget"], r["seed"]): r["accuracy"]
             for r in json.loads(out.with_suffix(".json").read_text())["runs"]}
    assert all(rerun[(p, "target", s)] == by_key[(p, "target", s)]
               for p in ("crop_flip", "RA(2,9)", "TA") for s in (1, 2))
