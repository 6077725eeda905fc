"""The race in the results file: its outcome, design, seed plan, screen and per-seed
accuracies, and the race's best candidate on test when it was not the export."""

from __future__ import annotations

from typing import Any


def candidate_lines(result: dict[str, Any], raw: dict[str, Any]) -> list[str]:
    """The race's best searched candidate on test, when it was not the export."""
    from policysearch.evidence.validate import table

    summary = (result.get("summaries") or {}).get("candidate")
    if not summary:
        return []
    name = (raw.get("race") or {}).get("candidate_file")
    return ["## The race's best candidate on test", "",
            f"The race did not export its best searched candidate (`{name}`); validated at the "
            "same seeds, it shows whether the race chose right (the test split chose nothing):",
            "", table(summary, subject="candidate"), ""]


def race_lines(race: dict[str, Any]) -> list[str]:
    """The race's design, seed plan, screen and per-seed accuracies (all from the study)."""
    decision = race.get("decision") or {}
    if not decision:
        return []
    lines = ["## The race", "", f"- Outcome: **{decision.get('outcome') or 'n/a'}**; "
             f"{decision.get('test')}"]
    plan = decision.get("plan") or {}
    if plan.get("text"):
        lines.append(f"- Seed plan: {plan['text']}")
    screen = decision.get("screen") or {}
    if screen.get("table"):
        lines += ["", f"Screen ({screen.get('budget')} budget, seeds "
                  f"{', '.join(map(str, screen.get('seeds') or []))}, selection split):", "",
                  "| policy | role | search value | screen mean ± std | finalist |",
                  "|---|---|---|---|---|"]
        for r in screen["table"]:
            value = "—" if r.get("search_value") is None else f"{100 * r['search_value']:.2f} %"
            lines.append(f"| {r['label']} | {r['role']} | {value} | {100 * r['mean']:.2f} ± "
                         f"{100 * r['std']:.2f} % | {'yes' if r.get('finalist') else ''} |")
    rows = [r for r in race.get("rows") or [] if r.get("stage", "race") == "race"]
    if rows:
        seeds = sorted({r["seed"] for r in rows})
        at = {(r["label"], r["seed"]): r["accuracy"] for r in rows}
        labels = list(dict.fromkeys(r["label"] for r in rows))
        lines += ["", "Final race, selection accuracy per seed (%):", "",
                  "| policy | " + " | ".join(map(str, seeds)) + " |",
                  "|---|" + "---|" * len(seeds)]
        for label in labels:
            cells = [f"{100 * at[(label, s)]:.2f}" if (label, s) in at else "—" for s in seeds]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return [*lines, ""]
