"""The issue's targets in the results file: each met, missed or not shown, on the test split.

Read from ``validate``'s summary (paired by seed): a gain target is met only when its one-sided
95 % lower bound clears it, "not below" targets by the paired noise, and the stretch only for a
searched policy (an exported baseline cannot show it).
"""

from __future__ import annotations

from typing import Any

TARGET_GAIN_OVER_CROP_FLIP = 0.03

STRONG = ("randaugment_n2_m9", "trivialaugment")
"""The stock policies the exported one must not fall below (and, as a stretch, beat)."""


def targets(summary: list[dict[str, Any]], same_as: str | None = None,
            same_label: str = "", same_roles: tuple[str, ...] = ()) -> list[str]:
    """The issue's targets on the test split, each met, missed or not shown, paired by seed.

    ``same_as`` names the baseline the exported policy is (validation then trains it once, as
    the policy): its comparison with itself is exactly zero, and the stretch, a searched policy
    beating the stock ones, cannot be shown. ``same_roles``: every validated role the exported
    policy is (``trivialaugment, flip off`` when the race exported the stock policy on the base
    the search chose).
    """
    rows = {s["role"]: s for s in summary}
    lines = []

    def gain(s: dict[str, Any]) -> str:
        return (f"{100 * s['gain']:+.2f} pts (95 % lower bound {100 * s['gain_lower']:+.2f}, "
                f"upper {100 * s['gain_upper']:+.2f}, one-sided p = {s['p_value']:.3g}, "
                f"n = {s['n']})")

    crop = rows.get("crop_flip")
    if same_as == "crop_flip":
        lines.append("- Beat crop+flip by at least 3 points, paired one-sided p < 0.05: the "
                     "exported policy is crop+flip itself (no measurable gain on the selection "
                     "split): **missed**.")
    elif crop is not None and "gain" in crop:
        # met only when the one-sided lower bound clears the 3 points, not the point estimate
        met = crop["gain_lower"] >= TARGET_GAIN_OVER_CROP_FLIP and crop["p_value"] < 0.05
        point = crop["gain"] >= TARGET_GAIN_OVER_CROP_FLIP and not met
        verdict = "met" if met else "point estimate only" if point else "missed"
        why = (f"; the point estimate clears 3 points, its 95 % lower bound "
               f"{100 * crop['gain_lower']:+.2f} does not" if point else "")
        lines.append(f"- Beat crop+flip by at least 3 points (the 95 % one-sided lower bound at "
                     f"least +3.00), paired one-sided p < 0.05: {gain(crop)}{why}: "
                     f"**{verdict}**.")
    strong = [rows[r] for r in STRONG if r in rows and "gain" in rows[r]]
    policy_mean = rows["policy"]["mean"] if "policy" in rows else float("nan")
    best = max(strong, key=lambda s: s["mean"]) if strong else None
    if same_as in STRONG and (best is None or policy_mean >= best["mean"]):
        versus = f"; against {best['label']}: {gain(best)}" if best is not None else ""
        lines.append(f"- Not below the better of RandAugment N=2 M=9 and TrivialAugment: the "
                     f"exported policy is {same_label} itself, the better of the two on test"
                     f"{versus}: **met**.")
    elif best is not None:
        close = best["gain_upper"] >= 0
        lines.append(f"- Not below the better of RandAugment N=2 M=9 and TrivialAugment "
                     f"({best['label']}) by more than the paired noise (upper bound of the gain "
                     f"at least 0): {gain(best)}: **{'met' if close else 'missed'}**.")
    unflipped = [rows[f"{r}, flip off"] for r in STRONG
                 if f"{r}, flip off" in rows and "gain" in rows[f"{r}, flip off"]]
    stock_off = next((r for r in STRONG if f"{r}, flip off" in same_roles), None)
    if stock_off and (not unflipped or policy_mean >= max(s["mean"] for s in unflipped)):
        versus = "".join(f"; against {s['label']}: {gain(s)}" for s in unflipped)
        lines.append(f"- Not below the better of them with the flip off: the exported policy is "
                     f"{stock_off} with the flip off itself, the better of the two on test"
                     f"{versus}: **met**.")
    elif unflipped:  # validate.flip_variants: what guessing the flip off would have given
        off = max(unflipped, key=lambda s: s["mean"])
        worse = 1 - off["p_value"]  # one-sided p for "the exported policy is worse"
        lines.append(f"- Not below the better of them with the flip off ({off['label']}): "
                     f"one-sided p for \"worse\" = {worse:.3g} (at least 0.05 to pass): "
                     f"{gain(off)}: **{'met' if worse >= 0.05 else 'missed'}**.")
    if stock_off is not None:
        lines.append(f"- Stretch: a searched op set beats the better of the stock policies with "
                     f"the flip off, paired one-sided p < 0.05: **not shown**: the exported "
                     f"policy is the stock {stock_off} on the base the search chose, because no "
                     "searched op set beat it on the selection split.")
    elif same_as is not None:
        lines.append(f"- Stretch: a searched policy beats the better of RandAugment N=2 M=9 and "
                     f"TrivialAugment, paired one-sided p < 0.05: **not shown**: the exported "
                     f"policy is the baseline {same_label} itself, because no searched policy "
                     f"beat it on the selection split.")
    elif best is not None:
        beats = best["p_value"] < 0.05 and best["gain"] > 0
        lines.append(f"- Stretch: beat {best['label']}, paired one-sided p < 0.05: "
                     f"{gain(best)}: **{'met' if beats else 'missed'}**.")
    if not lines:
        lines.append("- No baseline was validated beside the exported policy: nothing to "
                     "compare.")
    return lines
