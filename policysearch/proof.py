"""The proof experiment: search, then validate on the test split, then write the results file.

``policysearch experiment cifar10-reduced`` runs the experiment's search (resuming it when the
study exists), validates the exported policy against the baselines with several seeds at the
experiment's ``validate`` budget, and writes ``experiments/results/<name>.md`` with every
figure taken from that run, beside the policy JSON, the raw results JSON and the config.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from policysearch.config import Experiment
from policysearch.paths import PROJECT_ROOT, RESULTS_DIR

TARGET_GAIN_OVER_CROP_FLIP = 0.03


def run_experiment(name: str, *, smoke: bool = False, storage: str | None = None,
                   tracking_uri: str | None = None, out: str | None = None,
                   data_dir: str | None = None, log: Any = print) -> Path:
    """Run the whole experiment; returns the path of the results file."""
    from policysearch.config import load_experiment
    from policysearch.policy import write_policy
    from policysearch.search.orchestrate import run_search
    from policysearch.search.store import open_study
    from policysearch.spaces import load_space
    from policysearch.storage import default_storage
    from policysearch.validate import validate

    experiment = load_experiment(name, smoke=smoke, overrides={"data.data_dir": data_dir})
    space = load_space(experiment.search.space)
    tag = experiment.name + ("-smoke" if smoke else "")
    study_name = f"{tag}-{space.name}"
    out_path = Path(out) if out else RESULTS_DIR / f"{tag}.md"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    policy_path = out_path.with_suffix(".policy.json")
    storage_url = storage or default_storage()

    policy = run_search(experiment, space, storage_url=storage_url, study_name=study_name,
                        export_path=policy_path, tracking_uri=tracking_uri, log=log)
    study = open_study(storage_url, study_name).study
    search = _search_stats(study)
    log(f"experiment: validating {policy.label} against the baselines on the test split")
    if policy is None:  # exported by another process of the same study
        from policysearch.policy import read_policy

        policy = read_policy(policy_path)
    result = validate(policy, experiment, seeds=experiment.validate.seeds,
                      tracking_uri=tracking_uri, log=log)
    write_policy(policy, policy_path)
    raw = {"experiment": experiment.to_dict(), "search": search, "validate": result,
           "machine": machine(), "command": command(name, smoke), "code": _git_commit(),
           "results_json": out_path.with_suffix(".json").name}
    out_path.with_suffix(".json").write_text(json.dumps(raw, indent=2, default=str) + "\n")
    out_path.write_text(render(experiment, policy, search, result, raw, policy_path))
    log(f"experiment: wrote {out_path}")
    return out_path


def _search_stats(study: Any) -> dict[str, Any]:
    from policysearch.search.record import read_study

    trials = study.get_trials(deepcopy=False)
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    trial_seconds = (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
    rows = read_study(study).race_rows
    reeval_seconds = round(sum(float(r.get("seconds", 0.0)) for r in rows), 1)
    return {"study": study.study_name, "trials": len(trials), "states": states,
            "trial_phase_seconds": round(trial_seconds, 1),
            "reevaluation_seconds": reeval_seconds,
            "search_seconds": round(trial_seconds + reeval_seconds, 1)}


def machine() -> dict[str, Any]:
    """CPU model, core count, accelerator and Keras backend of this run."""
    import keras

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    accelerator = "none (CPU only)"
    if keras.backend.backend() == "jax":
        import jax

        gpus = [d.device_kind for d in jax.devices() if d.platform != "cpu"]
        accelerator = ", ".join(gpus) or accelerator
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        accelerator = ", ".join(g.name for g in gpus) or accelerator
    return {"cpu": cpu, "cores": os.cpu_count(), "accelerator": accelerator,
            "backend": keras.backend.backend(), "keras": keras.__version__,
            "python": platform.python_version()}


def command(name: str, smoke: bool) -> str:
    args = " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else ""
    make = f"make experiment EXPERIMENT={name}" + (" SMOKE=1" if smoke else "")
    return f"{make}   (runs: policysearch {args})" if args else make


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT,
                             capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def targets(summary: list[dict[str, Any]]) -> list[str]:
    """The issue's targets, each stated as met or missed and by how much (paired by seed)."""
    rows = {s["role"]: s for s in summary}
    lines = []
    crop = rows.get("crop_flip")
    if crop is not None and "gain" in crop:
        met = crop["gain"] >= TARGET_GAIN_OVER_CROP_FLIP and crop["p_value"] < 0.05
        verdict = "met" if met else "missed"
        lines.append(f"- Beat crop+flip by at least 3 points, paired one-sided p < 0.05: gain "
                     f"{100 * crop['gain']:+.2f} pts (95 % lower bound "
                     f"{100 * crop['gain_lower']:+.2f}, p = {crop['p_value']:.3g}): "
                     f"**{verdict}**.")
    strong = [rows[r] for r in ("randaugment_n2_m9", "trivialaugment") if r in rows]
    strong = [s for s in strong if "gain" in s]
    if strong:
        best = max(strong, key=lambda s: s["mean"])
        verdict = "met" if best["p_value"] < 0.05 and best["gain"] > 0 else "missed"
        lines.append(f"- Beat the better of RandAugment N=2 M=9 and TrivialAugment "
                     f"({best['label']}), paired one-sided p < 0.05: gain "
                     f"{100 * best['gain']:+.2f} pts (95 % lower bound "
                     f"{100 * best['gain_lower']:+.2f}, p = {best['p_value']:.3g}): "
                     f"**{verdict}**.")
    return lines


def render(experiment: Experiment, policy: Any, search: dict[str, Any],
           result: dict[str, Any], raw: dict[str, Any], policy_path: Path) -> str:
    """The results file, in Markdown."""
    import yaml

    from policysearch.validate import table

    m = raw["machine"]
    states = ", ".join(f"{v} {k.lower()}" for k, v in sorted(search["states"].items()))
    lines = [
        f"# Results: {experiment.name}",
        "",
        "Generated by `policysearch experiment`; every figure below comes from that run.",
        "",
        f"- Command: `{raw['command']}`",
        f"- Date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; "
        f"code: `{raw['code']}`",
        f"- Machine: {m['cpu']} ({m['cores']} cores); accelerator: {m['accelerator']}; "
        f"Keras {m['keras']} on {m['backend']}",
        f"- Data: {experiment.dataset}, {result['train_size']} training images "
        f"(seeded, class-balanced), {experiment.data.val_size} validation images from other "
        f"training images (search only), {result['test_size']} test images (validation only)",
        f"- Search: study `{search['study']}`, space `{experiment.search.space}`, "
        f"{search['trials']} trials ({states}), {experiment.trainer.epochs} proxy epochs; "
        f"trials took {_minutes(search['trial_phase_seconds'])}, re-evaluation of the top "
        f"{experiment.race.top_k} and the best baseline ({experiment.race.min_seeds}-"
        f"{experiment.race.max_seeds} seeds, {experiment.race.budget} budget) took "
        f"{_minutes(search['reevaluation_seconds'])}",
        f"- Validation: {result['epochs']} epochs, {result['seeds']} seeds per policy, took "
        f"{_minutes(result['seconds'])}",
        "",
        "## Test accuracy",
        "",
        table(result["summary"]),
        "",
        "Gain: the exported policy's accuracy minus the baseline's at the same seed, averaged "
        "over seeds; the lower bound is the one-sided 95 % paired t bound.",
        "",
        "## Targets",
        "",
        *targets(result["summary"]),
        "",
        "## The chosen policy",
        "",
        f"`{policy_path.name}` (load it with `policysearch.load_policy(...)`):",
        "",
        "```",
        repr(policy),
        *policy.describe(*(result["image_shape"][:2])),
        "```",
        "",
        f"Search decision (selection split only): {policy.source.get('decision') or 'n/a'} "
        f"{policy.source.get('reason') or ''}",
        "",
        "## Config",
        "",
        "```yaml",
        yaml.safe_dump(raw["experiment"], sort_keys=False).rstrip(),
        "```",
        "",
        f"Per-seed figures: `{raw['results_json']}`.",
        "",
    ]
    return "\n".join(lines)


def _minutes(seconds: Any) -> str:
    if seconds is None:
        return "n/a"
    seconds = float(seconds)
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"
