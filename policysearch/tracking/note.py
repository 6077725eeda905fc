"""The study run's description (``mlflow.note.content``, Markdown), rendered from the study.

Read top to bottom it answers what a reviewer asks: what was decided and how sure that is (the
decision sentence, the race table with paired gains and their intervals, the proxy's fidelity
when measured), how to use the exported policy, how to reproduce the study, and how to read each
plot. While the study runs it says how far it is (trials done of the budget, best so far).
"""

from __future__ import annotations

import math
from typing import Any

from policysearch.study.cost import cost_text, measured

PLOTS = (
    ("optimization_history.png",
     "each searched trial's search-validation accuracy (dots), the best so far (line) and the "
     "baselines (dashed); dots above the dashed crop+flip line are candidates, not yet proof: "
     "the race below decides"),
    ("param_importances.png",
     "how much of the spread in trial accuracy each parameter explains (fANOVA); a long bar "
     "means that choice matters, not in which direction"),
    ("op_in_out.png",
     "mean accuracy of the trials with each op in (green) or left out (grey); a green bar above "
     "its grey one hints the op helps; with few trials it is a hint, not a measurement"),
    ("exported_policy_epochs.png",
     "four training images as the exported policy (with the search's crop and flip) changes "
     "them in 8 epochs; the objects should stay recognisable"),
    ("trials.csv", "every trial: policy, state, value, paired gain, duration, failure reason"),
    ("policy.json", "the exported policy with its evidence (`source`): load it as below"),
)
"""The study run's artifacts, each with one line on how to read it."""


def pts(value: float | None, sign: bool = True) -> str:
    """A fraction as percentage points (``+1.23``)."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{100 * value:+.2f}" if sign else f"{100 * value:.2f}"


def gain_text(gain: dict[str, Any] | None) -> str:
    """``+1.20 pts [+0.31, +2.09]``: the paired gain with its interval (one-sided ends are ∞)."""
    if not gain:
        return "—"
    lower, upper = gain.get("lower"), gain.get("upper")
    low = pts(lower) if lower is not None and math.isfinite(lower) else "−∞"
    high = pts(upper) if upper is not None and math.isfinite(upper) else "+∞"
    text = f"{pts(gain.get('mean'))} pts [{low}, {high}]"
    if gain.get("p_value") is not None and math.isfinite(gain["p_value"]):
        text += f", p = {gain['p_value']:.3f}"
    return text


def decision_section(decision: dict[str, Any]) -> list[str]:
    """The decision sentence, its reason and the race table."""
    level = decision.get("confidence")
    lines = [f"### {decision['sentence']}", "", decision["reason"] + ".", "",
             f"Race on the **{decision['split']}** split at the **{decision['budget']}** budget, "
             f"seeds {', '.join(map(str, decision['seeds']))}; {decision['test']}"
             + (f", one-sided bound at {100 * level:.1f} %" if level else "") + ".", "",
             "| policy | role | accuracy, mean ± std (%) | paired gain over "
             f"{decision.get('baseline') or 'the best baseline'} [lower, upper bound] | seeds |",
             "|---|---|---|---|---|"]
    rows = sorted(decision["table"], key=lambda r: -(r["mean"] if math.isfinite(r["mean"])
                                                     else -1.0))
    for row in rows:
        out = f" (out after {row['out_after']})" if row.get("out_after") else ""
        lines.append(f"| {row['label']} | {row['role']} | {pts(row['mean'], False)} ± "
                     f"{pts(row['std'], False)} | {gain_text(row.get('gain_over_baseline'))} "
                     f"| {row['n']}{out} |")
    versus = decision.get("gain_over_crop_flip")
    if versus:
        lines += ["", f"Exported policy against crop+flip, same seeds: {gain_text(versus)}."]
    return lines


def fidelity_section(fidelity: dict[str, Any] | None) -> list[str]:
    """How well the proxy ranks policies like the target training (``policysearch fidelity``)."""
    if not fidelity:
        return []

    def corr(name: str) -> str | None:
        value = fidelity.get(name)
        if value is None:
            return None
        interval = fidelity.get(f"{name}_interval")
        text = f"{name.capitalize()} {value:+.2f}"
        if interval:
            text += f" [{interval[0]:+.2f}, {interval[1]:+.2f}]"
        return text

    parts = [p for p in (corr("spearman"), corr("kendall")) if p]
    level = fidelity.get("interval_level")
    if parts and level:
        parts[-1] += f" ({100 * level:.0f} % seed-resampling range, not a confidence interval)"
    timed = measured(fidelity) is not None
    if timed or fidelity.get("cost_estimate") is not None:  # else nothing to show
        median = " (median seconds)" if timed and "cost_ratio_median" in fidelity else ""
        parts.append(f"cost proxy/target {cost_text(fidelity)}{median}")
    if fidelity.get("policies"):
        parts.append(f"{len(fidelity['policies'])} policies x {len(fidelity.get('seeds', []))} "
                     "seeds")
    where = f" ({fidelity['file']})" if fidelity.get("file") else ""
    return ["", "#### Fidelity of the proxy", "",
            "Rank agreement between the proxy's and the target's scores of a fixed panel of "
            f"policies{where}: " + "; ".join(parts) + "."]


def progress_section(progress: dict[str, Any], earlier: bool = False) -> list[str]:
    best = progress.get("best")
    best_text = (f"best so far **{best['label']}** (trial {best['number']}): search-validation "
                 f"accuracy {pts(best['value'], False)} %"
                 + (f", {pts(best['gain'])} pts over crop+flip at the same seed"
                    if best.get("gain") is not None else "") if best else "no trial finished yet")
    then = (" Below: the decision of the study's earlier, smaller budget." if earlier else
            " The decision appears here when the race on the selection split has run.")
    return [f"### Running: {progress['done']} of {progress['total']} trials done", "",
            best_text + "." + then, ""]


def usage_section(policy_path: str | None) -> list[str]:
    path = policy_path or "policy.json"
    return ["", "#### Using the exported policy", "",
            f"`{path}` (also this run's artifact `policy.json`):", "", "```python",
            "import policysearch",
            f"augment = policysearch.load_policy({path!r})  # Keras layer; base=True adds the "
            "search's crop+flip",
            "ds = ds.map(lambda x, y: (augment(x, training=True), y))  # tf.data",
            f"transform = policysearch.load_transform({path!r})  # plain Python: PIL/uint8 in "
            "and out",
            "# PyTorch: torchvision.transforms.Compose([transform, transforms.ToTensor()])",
            "```"]


def reproduce_section(study_name: str, source: str, dataset: str, storage: str | None) -> list[str]:
    storage_flag = f" --storage {storage}" if storage else ""
    return ["", "#### Reproducing the study", "",
            "This run's artifact `experiment.yaml` is the study's whole configuration:", "",
            "```sh",
            f"policysearch search --experiment experiment.yaml --study-name {study_name}-rerun",
            f"# resume or extend this very study (from {source}):",
            f"policysearch search --experiment {source} --dataset {dataset} "
            f"--study-name {study_name}{storage_flag}",
            f"policysearch sync-mlflow --study-name {study_name}{storage_flag}"
            "  # log what MLflow missed",
            "```"]


def plots_section(links: dict[str, str] | None = None) -> list[str]:
    lines = ["", "#### Plots and files (Artifacts tab)", ""]
    lines += [f"- `{name}`: {text}." for name, text in PLOTS]
    lines.append("- each trial's run (nested below this one): its policy as parameters, "
                 "`val_accuracy` per epoch, `paired_gain_over_crop_flip`, `samples.png` (the "
                 "originals, then three draws of its augmentation).")
    for label, url in (links or {}).items():
        lines.append(f"- [{label}]({url})")
    return lines


def study_note(*, study_name: str, experiment: dict[str, Any], source: str,
               storage: str | None, decision: dict[str, Any] | None,
               progress: dict[str, Any] | None = None, fidelity: dict[str, Any] | None = None,
               policy_path: str | None = None, links: dict[str, str] | None = None) -> str:
    """The whole description: decision (or progress), fidelity, usage, reproduction, plots."""
    lines: list[str] = []
    if progress is not None:
        lines += progress_section(progress, earlier=decision is not None)
    if decision is not None:
        lines += decision_section(decision)
    lines += fidelity_section(fidelity)
    search = experiment.get("search", {})
    lines += ["", f"Study `{study_name}`: dataset `{experiment.get('dataset')}`, space "
                  f"`{search.get('space')}`, {search.get('trials')} searched trials + "
                  f"{len(search.get('baselines', []))} baselines, sampler "
                  f"{search.get('sampler')}, pruner {search.get('pruner')}."]
    lines += usage_section(policy_path)
    lines += reproduce_section(study_name, source, str(experiment.get("dataset")), storage)
    lines += plots_section(links)
    return "\n".join(lines) + "\n"
