"""Where a search's time went: searched trials apart from baselines, the trial phase, the race.

Read from the study (trial start and end times, the race's rows), so a resumed or shared study
is counted whole. The searched trials' share is their summed run time over the trial phase's
wall time plus the race's training time: the time the search spent searching.
"""

from __future__ import annotations

from typing import Any

from policysearch.study.record import queued_baseline, read_study

SCORED = ("COMPLETE", "PRUNED")


def search_tally(study: Any) -> dict[str, Any]:
    """Counts and seconds of the study's trials and race (see the module docstring)."""
    trials = study.get_trials(deepcopy=False)
    record = read_study(study)
    groups: dict[str, dict[str, Any]] = {"searched": {}, "baselines": {}}
    states: dict[str, int] = {}
    for t in trials:
        state = t.state.name
        states[state] = states.get(state, 0) + 1
        group = groups["baselines" if queued_baseline(t) else "searched"]
        group.setdefault("states", {})
        group["states"][state] = group["states"].get(state, 0) + 1
        group["trials"] = group.get("trials", 0) + 1
        seconds = t.duration.total_seconds() if t.duration else 0.0
        group["seconds"] = group.get("seconds", 0.0) + seconds
    for group in groups.values():
        group.setdefault("trials", 0)
        group.setdefault("states", {})
        group["seconds"] = round(group.get("seconds", 0.0), 1)
        group["scored"] = sum(group["states"].get(s, 0) for s in SCORED)
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    trial_wall = (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
    rows = record.race_rows
    race_seconds = sum(float(r.get("seconds", 0.0)) for r in rows)
    screen_seconds = sum(float(r.get("seconds", 0.0)) for r in rows
                         if r.get("stage") == "screen")
    spent = trial_wall + race_seconds
    return {
        "study": study.study_name, "trials": len(trials), "states": states,
        "searched": groups["searched"], "baselines": groups["baselines"],
        "trial_phase_seconds": round(trial_wall, 1),
        "reevaluation_seconds": round(race_seconds, 1),
        "screen_seconds": round(screen_seconds, 1),
        "search_seconds": round(spent, 1),
        "searched_share": groups["searched"]["seconds"] / spent if spent else None,
        "prune_rungs": list(record.prune_rungs), "prune_reason": record.prune_reason,
        "rung_agreement": rung_agreement_of(record.fidelity, record.prune_rungs),
    }


def rung_agreement_of(fidelity: dict[str, Any] | None,
                      allowed: list[int]) -> list[dict[str, Any]]:
    """The measured rungs (epoch, single-seed Spearman and its per-seed values), each marked
    whether the pruner may stop trials there."""
    rungs = (fidelity or {}).get("rungs") or []
    return [{"epoch": r["epoch"], "pruning_spearman": r["pruning_spearman"],
             "single_seed_spearman": r["single_seed_spearman"], "spearman": r["spearman"],
             "final": r.get("final", False), "prunes": r["epoch"] in allowed} for r in rungs]


def describe_tally(tally: dict[str, Any]) -> str:
    """One line: searched trials apart from baselines, and their share of the time."""
    searched, base = tally["searched"], tally["baselines"]
    pruned = searched["states"].get("PRUNED", 0)
    share = tally["searched_share"]
    share_text = f"{100 * share:.0f} %" if share is not None else "n/a"
    return (f"time: {searched['scored']} searched policies scored ({pruned} of them stopped at "
            f"a faithful rung) in {_clock(searched['seconds'])}, {base['trials']} baselines in "
            f"{_clock(base['seconds'])}; trial phase {_clock(tally['trial_phase_seconds'])}, "
            f"race {_clock(tally['reevaluation_seconds'])} of training (screen "
            f"{_clock(tally['screen_seconds'])}): searched trials took {share_text} of the "
            "search's time")


def _clock(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"
