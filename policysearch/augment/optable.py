"""The op table as Markdown, for ``docs/policy-format.md``.

Run ``python -m policysearch.augment.optable`` to print it.

Every column is a field of the op's ``OpSpec``; ``tests/test_exporters.py`` checks that the docs
hold exactly this table.
"""

from __future__ import annotations

from policysearch.augment.ops import OPS


def markdown_table() -> str:
    """One row per op: group, PIL reference, value at M = 30, the rule, membership, timm's op."""
    rows = ["| op | group | PIL reference | value at M=30 | argument v at signed level m "
            "(image h x w) | default set | timm `AugmentOp` |",
            "|---|---|---|---|---|---|---|"]
    for name, spec in OPS.items():
        at_max = spec.at_max or "no magnitude"
        rule = "—" if spec.kind == "identity" or not spec.at_max else f"`{spec.formula}`"
        sign = " (random sign)" if spec.signed else ""
        timm = f"`{spec.timm}`" if spec.timm else "none"
        if spec.kind == "identity" and spec.timm:
            timm += " at 8 bits (no change)"
        rows.append(f"| {name} | {spec.group} | {spec.reference} | {at_max} | {rule}{sign} | "
                    f"{'yes' if spec.default else 'no'} | {timm} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
