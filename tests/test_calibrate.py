"""``policysearch calibrate``: the ladder, the choice (faithful, confirmed on fresh seeds, or
nothing cheaper), the reuse of finished runs, and the search training the pick."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import tiny_experiment, write_image_folder

from policysearch.config import calibration
from policysearch.config.experiment import load_experiment
from policysearch.evidence.calibrate import (
    CONFIRM_BASE,
    build_ladder,
    judge,
    parse_rung,
    run_calibration,
    target_rung,
)
from policysearch.evidence.fidelity import build_panel

PANEL = ["crop_flip", "RA(1,5)", "RA(2,9)", "TA"]


def test_rungs_are_named_relative_to_the_target() -> None:
    config = load_experiment("cifar10", calibrated=False).to_dict()  # 1,000 x 150 epochs
    quarter = parse_rung("images/4", config, pool=0)
    assert quarter.train_size == 250 and quarter.trainer["epochs"] == 150
    half = parse_rung("epochs/2", config, pool=0)
    assert (half.train_size, half.trainer["epochs"]) == (1000, 75)
    assert half.trainer["warmup_epochs"] == 2.5  # the schedule compressed into 75 epochs
    assert half.trainer["validate_every"] == 75 and half.trainer["lr"] == 0.1
    assert parse_rung("width/2", config, 0).trainer["model"]["widths"] == [8, 16, 32]
    both = parse_rung("images/4+epochs/2", config, 0)
    assert (both.train_size, both.trainer["epochs"]) == (250, 75)
    proxy = parse_rung("proxy", config, 0)  # the file's own proxy
    assert (proxy.train_size, proxy.trainer["epochs"]) == (config["data"]["train_size"],
                                                           config["trainer"]["epochs"])
    assert proxy.stamp == calibration.proxy_stamp(config)
    ladder = build_ladder(["images/2", "proxy", "images/4+epochs/2", "images/1"], config, 0)
    # cheapest first (the shipped proxy, 250 x 40, costs least), and no rung equal to the target
    assert [r.name for r in ladder] == ["proxy", "images/4+epochs/2", "images/2"]
    assert len({quarter.stamp, half.stamp, both.stamp, target_rung(config).stamp}) == 4
    with pytest.raises(Exception, match="not a rung"):
        parse_rung("pixels/2", config, 0)


def test_a_rung_at_half_the_side_sees_a_quarter_of_the_pixels() -> None:
    """``side/2``: the target's network on images resized to half their side (the built-in
    ladder adds it for images of 64 px and more), costed at a quarter of the pixels."""
    config = load_experiment("cifar10", calibrated=False).to_dict()
    small = parse_rung("side/2", config, 0, side=96)
    assert small.trainer["model"]["input_size"] == 48
    assert (small.train_size, small.trainer["epochs"]) == (1000, 150)
    assert small.estimate == pytest.approx(0.25)
    assert small.describe().endswith("seen at 48 px")
    assert small.stamp != target_rung(config).stamp
    both = parse_rung("images/2+side/2", config, 0, side=96)
    assert both.estimate == pytest.approx(0.125)
    with pytest.raises(Exception, match="needs the images' side"):
        parse_rung("side/2", config, 0)


@pytest.mark.parametrize(("rho", "cost", "verdict"), [
    (0.9, 0.3, "faithful"), (0.79, 0.3, "below the bar"), (0.95, 1.02, "not cheaper"),
    (float("nan"), 0.2, "below the bar")])
def test_judge(rho: float, cost: float, verdict: str) -> None:
    assert judge(rho, cost, 0.8) == verdict


# ----------------------------------------------------------------------------------------------
# The choice on synthetic run results (saved runs: nothing is trained)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    data = write_image_folder(tmp_path / "data", classes=3, per_class=24, size=16)
    return tiny_experiment(tmp_path / "tiny.yaml", data,
                           target={"train_size": 36, "trainer": {"epochs": 4}},
                           fidelity={"seeds": 3, "panel": PANEL})


def synthetic(path: Path, experiment, ladder: list[str],
              accuracy: dict[str, dict[str, list[float]]]) -> None:
    """Saved runs: ``accuracy[rung][seeds]`` lists the panel's accuracies in PANEL order, the
    same at every seed of that group ("choose": 1-3, "confirm": 1001-1002, "confirm2":
    1003-1004, the fresh seeds of a second confirmation)."""
    config = experiment.to_dict()
    rungs = {r.name: r for r in build_ladder(ladder, config, 36)}
    rungs["target"] = target_rung(config)
    panel = build_panel(PANEL)
    runs = []
    for name, groups in accuracy.items():
        rung = rungs[name]
        for group, values in groups.items():
            seeds = {"choose": [1, 2, 3], "confirm": [CONFIRM_BASE + 1, CONFIRM_BASE + 2],
                     "confirm2": [CONFIRM_BASE + 3, CONFIRM_BASE + 4]}[group]
            for seed in seeds:
                for entry, value in zip(panel, values):
                    runs.append({"policy": entry.name, "key": entry.policy.key(),
                                 "stamp": rung.stamp, "rung": name, "seed": seed,
                                 "accuracy": value + 0.001 * (seed % 3),
                                 "seconds": 10.0 * rung.estimate})
    path.write_text(json.dumps({"runs": runs}))


TARGET = [0.50, 0.60, 0.70, 0.80]


def test_nothing_cheaper_is_faithful(tiny: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    experiment = load_experiment(str(tiny), calibrated=False)
    out = tmp_path / "results" / "tiny-calibration.yaml"
    out.parent.mkdir()
    ladder = ["images/2", "epochs/2"]
    synthetic(out.with_suffix(".json"), experiment, ladder, {
        "target": {"choose": TARGET},
        "images/2": {"choose": [0.80, 0.70, 0.60, 0.50]},   # the order reversed
        "epochs/2": {"choose": [0.60, 0.50, 0.80, 0.70]}})  # Spearman +0.6
    lines: list[str] = []
    result = run_calibration(experiment, build_panel(PANEL), [1, 2, 3], out, ladder=ladder,
                             log=lines.append)
    assert result["picked"].name == "target"
    assert any(line.startswith("calibrate: nothing cheaper is faithful (best: epochs/2, "
                               "Spearman +0.60") and "the search runs at the target budget"
               in line for line in lines), "\n".join(lines)
    assert any("trained 0 runs now" in line for line in lines)
    assert "confirm_spearman" not in result["rows"][0]  # no confirmation runs were needed
    # the search honours it: its proxy becomes the target
    saved = yaml.safe_load(out.read_text())
    assert saved["calibration"]["rung"] == "target"
    monkeypatch.setattr(calibration, "RESULTS_DIR", out.parent)
    searched = load_experiment(str(tiny))
    assert searched.data.train_size == 36 and searched.trainer.epochs == 4
    assert "the target itself" in calibration.proxy_note(
        searched.to_dict(), calibration.calibration_path("tiny"), searched.source)
    # flags on the command line still win over the calibration
    assert load_experiment(str(tiny), overrides={"trainer.epochs": 3}).trainer.epochs == 3


def test_the_pick_is_confirmed_on_fresh_seeds(tiny: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    experiment = load_experiment(str(tiny), calibrated=False)
    out = tmp_path / "tiny-calibration.yaml"
    ladder = ["images/4", "images/2"]
    synthetic(out.with_suffix(".json"), experiment, ladder, {
        "target": {"choose": TARGET, "confirm": TARGET, "confirm2": TARGET},
        "images/4": {"choose": TARGET, "confirm": [0.80, 0.70, 0.60, 0.50]},  # luck on 1-3
        # confirmed on seeds that rejected nothing: 1003-1004, not images/4's 1001-1002
        "images/2": {"choose": TARGET, "confirm2": TARGET}})
    lines: list[str] = []
    result = run_calibration(experiment, build_panel(PANEL), [1, 2, 3], out, ladder=ladder,
                             log=lines.append)
    status = {r["rung"]: r["status"] for r in result["rows"]}
    assert status == {"images/4": "not confirmed", "images/2": "picked",
                      "target": "the reference"}
    assert result["picked"].train_size == 18
    assert any(line.startswith("calibrate: picked images/2 (18 images x 4 epochs") and
               "+1.00 on the confirmation seeds 1003, 1004" in line for line in lines)
    assert result["confirm_seeds"] == [1003, 1004]
    assert [r.get("confirm_seeds") for r in result["rows"][:2]] == [[1001, 1002], [1003, 1004]]
    monkeypatch.setattr(calibration, "RESULTS_DIR", tmp_path)
    assert load_experiment(str(tiny)).data.train_size == 18
    assert "picked by `calibrate`" in calibration.proxy_note(
        load_experiment(str(tiny)).to_dict(), out, str(tiny))


# ----------------------------------------------------------------------------------------------
# The command on the real digits at the smoke budget


def run_cli(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
    proc = subprocess.run([sys.executable, "-m", "policysearch", *args], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_ladder_on_real_digits_then_nothing_to_train(mnist_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "mnist-smoke-calibration.yaml"
    args = ("calibrate", "mnist", "--smoke", "--data-dir", str(mnist_dir), "--out", str(out),
            "--ladder", "images/2", "epochs/2")
    first = run_cli(tmp_path, *args).stdout
    assert "Spearman [90 % seed range]" in first and "calibrate: [1/6]" in first
    saved = yaml.safe_load(out.read_text())
    cal = saved["calibration"]
    assert cal["seeds"] == [1, 2] and cal["confirm_seeds"] == [1001, 1002]
    assert cal["rung"] in ("images/2", "epochs/2", "target")
    assert saved["proxy"]["trainer"]["epochs"] in (1, 2)
    rows = json.loads(out.with_suffix(".json").read_text())["analysis"]["rows"]
    assert [r["rung"] for r in rows][-1] == "target"
    if cal["rung"] != "target":
        assert cal["confirm_spearman"] >= 0.8 and cal["spearman"] >= 0.8
    else:
        assert "nothing cheaper is faithful" in first
    assert "## The ladder" in out.with_suffix(".md").read_text()
    # resumed: every run is saved, the target's trained once for the whole ladder
    runs = json.loads(out.with_suffix(".json").read_text())["runs"]
    keys = [(r["stamp"], r["key"], r["seed"]) for r in runs]
    assert len(keys) == len(set(keys))
    second = run_cli(tmp_path, *args).stdout
    assert "trained 0 runs now" in second and "runs to train" not in second
    assert yaml.safe_load(out.read_text())["calibration"]["rung"] == cal["rung"]


@pytest.mark.parametrize(("args", "needle"), [
    (["nosuch"], "experiment 'nosuch': no file"),
    (["cifar10", "--ladder", "pixels/2"], "calibrate.ladder: 'pixels/2' is not a rung"),
    (["cifar10", "--bar", "2"], "--bar 2.0: a Spearman bar lies between -1 and 1"),
    (["cifar10", "--confirm-seeds", "1"], "--confirm-seeds: must be at least 2"),
])
def test_bad_calibrate_input_is_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "policysearch", "calibrate", *args,
                           "--out", str(tmp_path / "c.yaml")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and needle in lines[0], proc.stderr
    assert not (tmp_path / "c.yaml").exists()


def test_runs_of_fidelity_are_reused(tiny: Path, tmp_path: Path) -> None:
    # `policysearch fidelity` trained the panel at the file's proxy and target: calibrate's
    # `proxy` rung and its target need no training
    experiment = load_experiment(str(tiny), calibrated=False)
    panel = build_panel(PANEL)
    runs = [{"policy": e.name, "key": e.policy.key(), "budget": budget, "seed": seed,
             "accuracy": value + 0.001 * seed, "seconds": 5.0 if budget == "proxy" else 10.0}
            for budget, values in (("target", TARGET), ("proxy", TARGET[::-1]))
            for seed in (1, 2, 3) for e, value in zip(panel, values)]
    (tmp_path / "tiny-fidelity.json").write_text(json.dumps(
        {"experiment": experiment.to_dict(), "runs": runs}))
    lines: list[str] = []
    result = run_calibration(experiment, panel, [1, 2, 3], tmp_path / "tiny-calibration.yaml",
                             ladder=["proxy"], log=lines.append)
    assert "24 finished runs saved (24 from tiny-fidelity.json)" in lines[0]
    assert result["picked"].name == "target" and result["rows"][0]["spearman"] == -1.0
    assert any("trained 0 runs now" in line for line in lines)


def test_fidelity_reuses_the_runs_calibrate_trained(tiny: Path, tmp_path: Path) -> None:
    # the rung calibrate picked is the proxy the search trains: `fidelity` (and the fidelity
    # stage of `make experiment`) takes its runs and the target's from the calibration JSON
    from policysearch.evidence.fidelity_runs import calibration_runs

    experiment = load_experiment(str(tiny), calibrated=False)
    config = experiment.to_dict()
    panel = build_panel(PANEL)
    stamps = {"proxy": calibration.proxy_stamp(config), "target": calibration.target_stamp(config),
              "other": "0123456789abcdef"}
    runs = [{"policy": e.name, "key": e.policy.key(), "stamp": stamp, "rung": budget,
             "seed": 1, "accuracy": 0.5, "seconds": 3.0, "curve": {"1": 0.4, "2": 0.5}}
            for budget, stamp in stamps.items() for e in panel]
    confirm = [{**run, "seed": 1001} for run in runs]  # calibrate's fresh seeds, not the panel's
    path = tmp_path / "tiny-calibration.json"
    path.write_text(json.dumps({"experiment": config, "runs": runs + confirm}))
    have = {(panel[0].policy.key(), "target", 1)}  # already saved by fidelity itself
    got = calibration_runs(path, experiment, have, {1, 2})
    assert have == {(panel[0].policy.key(), "target", 1)}  # the caller's set is left alone
    assert sorted((r["budget"], r["key"]) for r in got) == sorted(
        [("proxy", e.policy.key()) for e in panel]
        + [("target", e.policy.key()) for e in panel[1:]])
    assert all(r["from"] == path.name and "stamp" not in r for r in got)
    assert calibration_runs(tmp_path / "missing.json", experiment, set()) == []
    path.write_text("{not json")
    assert calibration_runs(path, experiment, set()) == []


def test_the_report_says_when_runs_came_from_more_than_one_machine() -> None:
    # run seconds compare only on one CPU model: a resumed calibration that moved machines says
    # so beside its cost column (and shows the machine-free estimate next to each measured cost)
    from policysearch.evidence.calibrate_report import _cost, _machines_line

    one = [{"trained": 40, "cpu": "Intel Xeon"}, {"trained": 0, "cpu": "AMD EPYC"},
           {"trained": 24, "cpu": "Intel Xeon"}]
    assert _machines_line(one) == []
    mixed = [{"trained": 96}, {"trained": 24, "cpu": "Intel Xeon"}]
    (line,) = _machines_line(mixed)
    assert "1: not recorded; 2: Intel Xeon" in line and "across machines" in line
    assert _cost({"rung": "width/2", "cost_ratio": 0.41, "estimate": 0.5}) == "0.41 (~0.50)"
    assert _cost({"rung": "target", "cost_ratio": 1.0, "estimate": 1.0}) == "1.00"
    assert _cost({"rung": "epochs/2", "estimate": 0.5}) == "~0.50"


def test_run_seconds_are_compared_on_one_machine_only() -> None:
    # a resumed calibration (or a fidelity that borrows a calibration's runs) whose proxy ran on
    # another CPU than the target's runs must not state a cost from seconds of two machines:
    # the same CPU, or the machine-free estimate, shown as such
    import math

    from policysearch.study.cost import cost_text, decisive, ratios

    def runs(cpu: str | None, seconds: list[float]) -> list[dict]:
        return [{"seconds": s, **({"cpu": cpu} if cpu else {})} for s in seconds]

    legacy = ratios(runs(None, [30, 30]), runs(None, [60, 60]))  # saved before CPUs were kept
    assert legacy["cost_ratio_median"] == 0.5 and not legacy["cost_timed_apart"]
    apart = ratios(runs("slow", [60, 60]), runs(None, [48, 48]))
    assert math.isnan(apart["cost_ratio_median"]) and apart["cost_timed_apart"]
    assert math.isnan(apart["cost_ratio"])
    assert cost_text(apart).startswith("not measured")
    assert cost_text({**apart, "cost_estimate": 0.5}).startswith("~0.50 (estimated")
    assert decisive({**apart, "cost_estimate": 0.5}) == 0.5
    both = ratios(runs("slow", [60, 60]), runs(None, [48, 48]) + runs("slow", [120, 80, 100]))
    assert both["cost_ratio_median"] == pytest.approx(0.6)  # on the CPU both ran on
    assert both["median_seconds_per_run"] == {"proxy": 60, "target": 100}
    assert cost_text(both, seconds=True) == "0.60 (60 s / 100 s)" and decisive(both) == 0.6
