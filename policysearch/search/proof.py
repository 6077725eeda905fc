"""The proof experiment: search, then validate on the test split, then write the results file.

``policysearch experiment cifar10-reduced`` runs the experiment's search (resuming it when the
study exists), validates the exported policy against the baselines with several seeds at the
experiment's ``validate`` budget, and writes ``experiments/results/<name>.md`` with every
figure taken from that run, beside the policy JSON, the raw results JSON and the config.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import shlex
import sys
from pathlib import Path
from typing import Any

from policysearch.config.experiment import Experiment
from policysearch.evidence.runinfo import git_commit, machine
from policysearch.paths import RESULTS_DIR, write_atomic
from policysearch.policy.baselines import same_baseline
from policysearch.search.race_report import candidate_lines, race_lines
from policysearch.search.tally import search_tally
from policysearch.search.targets import targets
from policysearch.study.cost import cost_text


def run_experiment(name: str, *, smoke: bool = False, storage: str | None = None,
                   tracking_uri: str | None = None, out: str | None = None,
                   data_dir: str | None = None, log: Any = print) -> Path:
    """Fidelity, search, validation; returns the path of the results file."""
    import time

    from policysearch.config.calibration import calibration_path, proxy_note
    from policysearch.config.experiment import load_experiment
    from policysearch.evidence.fidelity import DEFAULT_PANEL, build_panel, run_fidelity
    from policysearch.evidence.validate import validate
    from policysearch.policy.definition import read_policy, write_policy
    from policysearch.search.orchestrate import run_search
    from policysearch.study.record import read_study
    from policysearch.study.spaces import load_space
    from policysearch.study.storage import default_storage
    from policysearch.study.store import open_study

    experiment = load_experiment(name, smoke=smoke, overrides={"data.data_dir": data_dir})
    log(proxy_note(experiment.to_dict(), calibration_path(experiment.name, smoke),
                   experiment.source))
    space = load_space(experiment.search.space)
    tag = experiment.name + ("-smoke" if smoke else "")
    study_name = f"{tag}-{space.name}"
    out_path = Path(out) if out else RESULTS_DIR / f"{tag}.md"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    policy_path = out_path.with_suffix(".policy.json")
    storage_url = storage or default_storage()
    stages: dict[str, float] = {}

    started = time.monotonic()
    panel = build_panel(experiment.fidelity.panel or DEFAULT_PANEL)
    fidelity_path = out_path.with_name(f"{tag}-fidelity.md")
    run_fidelity(experiment, panel, list(range(1, experiment.fidelity.seeds + 1)),
                 fidelity_path, tracking_uri=tracking_uri, command=command(name, smoke),
                 log=log)
    stages["fidelity"] = time.monotonic() - started

    started = time.monotonic()
    policy = run_search(experiment, space, storage_url=storage_url, study_name=study_name,
                        export_path=policy_path, tracking_uri=tracking_uri,
                        fidelity_path=fidelity_path.with_suffix(".json"), log=log)
    if policy is None:  # exported by another process of the same study
        policy = read_policy(policy_path)
    stages["search"] = time.monotonic() - started
    study = open_study(storage_url, study_name).study
    search = search_tally(study)
    stage = stages["search"]
    search["stage_seconds"] = round(stage, 1)
    search["searched_share_of_stage"] = search["searched"]["seconds"] / stage if stage else None

    started = time.monotonic()
    candidate = race_candidate(policy, experiment)
    candidate_path = out_path.with_suffix(".candidate.json")
    also = []
    if candidate is not None:
        write_policy(candidate, candidate_path)
        also = [("candidate", candidate.label, candidate)]
        log(f"experiment: the race's best searched candidate, {candidate.label}, was not "
            f"exported; it is validated beside the export ({candidate_path.name})")
    elif candidate_path.exists():
        candidate_path.unlink()  # an earlier run's: this race exported its best candidate
    log(f"experiment: validating {policy.label} against the baselines on the test split")
    result = validate(policy, experiment, seeds=experiment.validate.seeds,
                      tracking_uri=tracking_uri, log=log, also=also)
    stages["validate"] = time.monotonic() - started
    write_policy(policy, policy_path)
    plot = out_path.with_suffix(".png")
    write_atomic(plot, paired_plot(result["rows"]))
    samples = out_path.with_name(f"{out_path.stem}-samples.png")
    write_atomic(samples, policy_samples(policy, experiment))
    stored = read_study(study)
    race = {"decision": policy.source.get("evidence"), "rows": stored.race_rows,
            "candidate_file": candidate_path.name if candidate is not None else None}
    raw = {"experiment": experiment.to_dict(), "search": search, "validate": result,
           "race": race,
           "stages_seconds": {k: round(v, 1) for k, v in stages.items()},
           "machine": machine(), "command": command(name, smoke), "code": git_commit(),
           "results_json": out_path.with_suffix(".json").name, "plot": plot.name,
           "samples": samples.name,
           "fidelity": fidelity_path.name,
           "fidelity_summary": fidelity_summary(fidelity_path.with_suffix(".json"))}
    write_atomic(out_path.with_suffix(".json"), json.dumps(raw, indent=2, default=str) + "\n")
    write_atomic(out_path, render(experiment, policy, search, result, raw, policy_path))
    log(f"experiment: wrote {out_path} and {fidelity_path}")
    if not smoke and out is None:  # the committed results: README's side-by-side follows them
        from policysearch.search.side_by_side import update_readme

        if update_readme():
            log("experiment: README.md's \"Does it work?\" table updated from the results")
    return out_path


def race_candidate(policy: Any, experiment: Experiment) -> Any:
    """The race's best searched candidate when the export is another policy (as a policy file
    that says it was not exported), else ``None``."""
    from dataclasses import replace

    from policysearch.policy.definition import Policy

    evidence = policy.source.get("evidence") or {}
    chosen = evidence.get("candidate_policy")
    if not chosen:
        return None
    candidate = Policy.from_dict(chosen["policy"])
    candidate = replace(candidate, base=candidate.trained_base(
        experiment.base_augment.crop_padding, experiment.base_augment.flip))
    if candidate.key() == policy.key():  # the export: both as they train, base included
        return None
    source = {**policy.source, "trial": chosen.get("trial"), "searched": True,
              "exported": False,
              "note": "the race's best searched candidate, not exported; validated beside the "
                      "export so the test split shows whether the race chose right (it chooses "
                      "nothing)"}
    return replace(candidate, source=source)


def paired_plot(rows: list[dict[str, Any]]) -> bytes:
    """Test accuracy per policy and seed; a line joins one seed's policies (paired)."""
    from policysearch.tracking.plots import figure_png, new_figure

    fig, ax = new_figure(6.5, 4.0)
    labels = list(dict.fromkeys(r["label"] for r in rows))
    seeds = sorted({r["seed"] for r in rows})
    at = {(r["label"], r["seed"]): 100 * r["accuracy"] for r in rows}
    for seed in seeds:
        xs = [i for i, label in enumerate(labels) if (label, seed) in at]
        ax.plot(xs, [at[(labels[i], seed)] for i in xs], marker="o", alpha=0.6,
                label=f"seed {seed}")
    ax.set_xticks(range(len(labels)), labels, rotation=15, fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Test accuracy per policy; lines join the same seed")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return figure_png(fig)


def fidelity_summary(path: Path) -> dict[str, Any] | None:
    """The proxy's measured agreement and cost (median seconds) from its fidelity JSON."""
    try:
        saved = json.loads(path.read_text())
        analysis = saved["analysis"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    keys = ("spearman", "spearman_interval", "cost_ratio", "cost_ratio_median",
            "median_seconds_per_run", "cost_estimate")
    return {**{k: analysis.get(k) for k in keys},
            "reused": saved.get("reused"), "invocations": len(saved.get("invocations") or []),
            "total_wall_seconds": saved.get("total_wall_seconds")}


SAMPLE_EPOCHS = 8


def policy_samples(policy: Any, experiment: Experiment, epochs: int = SAMPLE_EPOCHS) -> bytes:
    """What ``policy`` does to the dataset: one training image per class (at most 8), then what
    the model sees of it in each of ``epochs`` epochs, the base crop and flip as the policy
    trains with them (a PNG)."""
    from policysearch.config.auto import resolve_crop_padding
    from policysearch.data.splits import load_splits
    from policysearch.tracking.plots import epochs_grid
    from policysearch.tracking.view import sample_images

    images = sample_images(load_splits(experiment))
    padding = resolve_crop_padding(experiment.base_augment.crop_padding, images.shape[1])
    base = policy.trained_base(padding, experiment.base_augment.flip)
    return epochs_grid(policy, images, epochs, seed=0, crop_padding=base["crop_padding"],
                       flip=base["flip"])




def median_seconds(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Each validated policy's median seconds a run (a slow mode of a few runs moves a mean)."""
    import statistics

    by: dict[str, list[float]] = {}
    for r in rows:
        if r.get("seconds") is not None:
            by.setdefault(r["label"], []).append(float(r["seconds"]))
    return {label: statistics.median(v) for label, v in by.items()}


def command(name: str, smoke: bool) -> str:
    args = " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else ""
    make = f"make experiment EXPERIMENT={name}" + (" SMOKE=1" if smoke else "")
    return f"{make}   (runs: policysearch {args})" if args else make


def render(experiment: Experiment, policy: Any, search: dict[str, Any],
           result: dict[str, Any], raw: dict[str, Any], policy_path: Path) -> str:
    """The results file, in Markdown."""
    import yaml

    from policysearch.evidence.validate import same_notes, table
    from policysearch.policy.explain import show_lines

    m = raw["machine"]
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
        f"- Data: {experiment.dataset}: target {result['train_size']} training images, proxy "
        f"{experiment.data.train_size} of them (seeded, class-balanced); "
        f"{experiment.data.val_size} search-validation and "
        f"{result.get('selection_size', experiment.data.selection_size)} "
        f"selection images from other training images; {result['test_size']} test images "
        "(read by validation only)",
        *search_lines(experiment, search),
        f"- Validation (target budget): {result['train_size']} training images, "
        f"{result['epochs']} epochs, {result['seeds']} seeds per policy, paired by seed",
        f"- Exported policy: {policy!r} (in words and pictures: "
        "[the chosen policy](#the-chosen-policy))",
        "- Wall time per stage: " + ", ".join(f"{k} {_minutes(v)}"
                                             for k, v in raw["stages_seconds"].items())
        + reused_fidelity(raw.get("fidelity_summary"))
        + f"; fidelity of the proxy: [{raw['fidelity']}]({raw['fidelity']})",
        "",
        "## Test accuracy",
        "",
        table(result["summary"]),
        "",
        *[f"- {note}." for note in same_notes(result.get("same", []))],
        *([""] if result.get("same") else []),
        "Gain: the exported policy's accuracy minus the baseline's at the same seed, averaged "
        "over seeds; the lower bound is the one-sided 95 % paired t bound.",
        "",
        f"![test accuracy per policy and seed]({raw['plot']})",
        "",
        *candidate_lines(result, raw),
        *race_lines(raw.get("race") or {}),
        *cost_lines(result["rows"], raw.get("fidelity_summary")),
        *rung_table(search),
        "## Targets",
        "",
        *targets(result["summary"], *same_baseline(policy, experiment.search.baselines),
                 same_roles=tuple(s["role"] for s in result.get("same", [])
                                  if s["as"] == "policy")),
        "",
        "## The chosen policy",
        "",
        f"`{policy_path.name}` (load it with `policysearch.load_policy(...)`):",
        "",
        "```",
        *show_lines(policy, result["epochs"], *result["image_shape"][:2]),
        "```",
        "",
        f"What it does to {experiment.dataset}'s images: one training image per class, then "
        f"what the model sees of it in each of {SAMPLE_EPOCHS} epochs (the base crop and flip "
        "included as the policy trains with them):",
        "",
        f"![the exported policy on training images]({raw['samples']})",
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


def search_lines(experiment: Experiment, search: dict[str, Any]) -> list[str]:
    """The search in the results file: searched trials apart from baselines, where the time
    went (the searched trials' share of the search stage's wall time), the race's stages."""
    searched, base = search["searched"], search["baselines"]
    states = ", ".join(f"{v} {k.lower()}" for k, v in sorted(searched["states"].items()))
    share = search.get("searched_share_of_stage")
    share_text = f"{100 * share:.0f} %" if share is not None else "n/a"
    race = experiment.race
    screen = race.screen
    first = (f"a first round of the top {screen.top_k} searched policies and every baseline "
             f"({screen.seeds} paired seeds, {screen.budget} budget) took "
             f"{_minutes(search['screen_seconds'])}; then " if screen.top_k else "")
    final_seconds = search["reevaluation_seconds"] - search["screen_seconds"]
    return [
        f"- Search: study `{search['study']}`, space `{experiment.search.space}`, "
        f"{experiment.trainer.epochs} proxy epochs: **{searched['scored']} searched policies "
        f"scored** ({states or 'none'}"
        + ("; a pruned trial stopped at a rung measured faithful" if "PRUNED" in
           searched["states"] else "") + "), "
        f"besides {base['trials']} baselines",
        f"- Time: searched trials {_minutes(searched['seconds'])} of the search stage's "
        f"{_minutes(search['stage_seconds'])} wall time (**{share_text}**); baselines "
        f"{_minutes(base['seconds'])}; race {_minutes(search['reevaluation_seconds'])} of "
        "training",
        f"- Race on the selection split: {first}the best {race.top_k} (the finalists), the best "
        f"baseline and crop+flip ({race.min_seeds}-{race.max_seeds} paired seeds, {race.budget} "
        f"budget) took {_minutes(final_seconds)}",
        f"- Pruner ({experiment.search.pruner}): {search.get('prune_reason') or 'n/a'}",
    ]


def rung_table(search: dict[str, Any]) -> list[str]:
    """The pruner's rungs with their measured agreement (from the fidelity run)."""
    rungs = search.get("rung_agreement") or []
    if not rungs:
        return []
    lines = ["## The pruner's rungs", "",
             "Measured by the fidelity run: the panel's proxy accuracy at the epoch, one seed at "
             "a time, ranked against the target's final accuracy (see the fidelity file).", "",
             "| epoch | single-seed Spearman (mean) | per seed | Spearman of the seed means | "
             "prunes here |", "|---|---|---|---|---|"]
    for r in rungs:
        per = ", ".join(f"{v:+.2f}" for v in r["single_seed_spearman"])
        where = "end of the run" if r.get("final") else ("yes" if r["prunes"] else "no")
        lines.append(f"| {r['epoch']} | {r['pruning_spearman']:+.2f} | {per} | "
                     f"{r['spearman']:+.2f} | {where} |")
    return [*lines, ""]


def cost_lines(rows: list[dict[str, Any]], fidelity: dict[str, Any] | None) -> list[str]:
    """Costs on median seconds: a slow mode of a few runs moves a mean, not a median."""
    medians = median_seconds(rows)
    if not medians:
        return []
    text = ", ".join(f"{label} {sec:.0f} s" for label, sec in medians.items())
    lines = [f"Median seconds a test run (target budget): {text}."]
    if fidelity and fidelity.get("cost_ratio_median") is not None:
        mean = fidelity.get("cost_ratio")
        on_mean = (f" ({mean:.2f} on mean seconds)" if mean is not None and math.isfinite(mean)
                   else "")
        chose = (" of the runs `calibrate` chose this proxy with: a selection statistic, not "
                 "an independent check (`policysearch fidelity` on other seeds is one)"
                 if fidelity.get("reused") else "")
        lines.append(f"The proxy costs {cost_text(fidelity)} of a target run on median "
                     f"seconds{on_mean}, and ranks the fidelity panel at Spearman "
                     f"{fidelity['spearman']:+.2f} (seed means{chose}).")
    return [" ".join(lines), ""]


def reused_fidelity(summary: dict[str, Any] | None) -> str:
    """What the fidelity stage's time leaves out when it reused runs of earlier invocations."""
    if not summary or not summary.get("reused") or not summary.get("total_wall_seconds"):
        return ""
    return (f" (fidelity reused {summary['reused']} saved runs: over its "
            f"{summary['invocations']} invocation(s) it took "
            f"{_minutes(summary['total_wall_seconds'])})")


def _minutes(seconds: Any) -> str:
    if seconds is None:
        return "n/a"
    seconds = float(seconds)
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"
