"""Exported code: exact and complete for torchvision and timm, every snippet compiles.

Running the snippets against the real libraries is ``tests/interop`` (``make test-interop``);
here every printed snippet at least compiles, for the shipped example policies and more.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from policysearch import autoaugment, randaugment, read_policy, trivialaugment
from policysearch.augment import OPS
from policysearch.policy.exporters import TARGETS, export

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = {path.stem: path for path in sorted((ROOT / "examples" / "policies").glob("*.json"))}
MORE = {
    "ra_mstd_cutout": randaugment(3, 17.5, ops=["Cutout", "Invert", "Posterize", "Solarize",
                                                 "TranslateY"], magnitude_std=5),
    "ra_zero": randaugment(0, 0, ops=["Rotate"]),
    "ta_subset": trivialaugment(ops=["Posterize", "Solarize", "Identity", "Contrast"]),
    "ra_op_magnitudes": randaugment(2, 9, ops=["Identity", "Rotate", "TranslateY", "Solarize",
                                               "Posterize", "Color"],
                                    op_magnitudes={"Rotate": 21, "TranslateY": 21,
                                                   "Posterize": 30}, magnitude_std=2),
    "aa_ragged": autoaugment([[("Cutout", 0.5, 30)], [("Rotate", 1, 0), ("Posterize", 0.2, 30),
                                                      ("Solarize", 0.9, 0)]]),
}


def test_the_example_policies_are_shipped() -> None:
    kinds = {name: read_policy(path) for name, path in EXAMPLES.items()}
    assert {p.type for p in kinds.values()} == {"randaugment", "trivialaugment", "autoaugment"}
    subset = kinds["randaugment_subset"]
    assert set(subset.ops) < set(kinds["randaugment"].ops), "an op subset"
    groups = kinds["randaugment_groups"]
    assert groups.op_magnitudes and not groups.flips, "a magnitude per group, the flip off"


@pytest.mark.parametrize("target", ["torchvision", "timm"])
@pytest.mark.parametrize("name", list(EXAMPLES))
def test_examples_export_exact_code(name: str, target: str) -> None:
    result = export(read_policy(EXAMPLES[name]), target)
    assert result.exact, result.differences
    tree = ast.parse(result.code)
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in ([ast.alias(node.module)] if isinstance(node, ast.ImportFrom)
                              else node.names)}
    assert {"torchvision": {"torch", "torchvision"}, "timm": {"timm"}}[target] <= imported
    assert re.search(r"^augment = ", result.code, re.M), "the snippet defines `augment`"


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", list(EXAMPLES) + list(MORE))
def test_every_printed_snippet_compiles(name: str, target: str) -> None:
    policy = read_policy(EXAMPLES[name]) if name in EXAMPLES else MORE[name]
    result = export(policy, target)
    for code in (result.code, result.approximate):
        if code is not None:
            compile(code, f"<{name} {target}>", "exec")
    assert result.exact or result.differences
    assert result.approximate is None or result.distance.count("%") == 2


def test_timm_never_prints_a_zero_bit_posterize() -> None:
    """PosterizeOriginal keeps int(0.4 L) + 4 >= 4 bits; the stock form stops at mmax9."""
    for policy in [*MORE.values(), *(read_policy(p) for p in EXAMPLES.values())]:
        result = export(policy, "timm")
        for code in filter(None, (result.code, result.approximate)):
            assert "PosterizeIncreasing" not in code and "'Posterize'" not in code
            for level in re.findall(r"rand-m(\d+)", code):
                assert int(level) <= 9 and "mmax9" in code


def test_timm_levels_reproduce_our_arguments() -> None:
    """timm's level functions at our per-op magnitude give our argument at every bin."""
    from policysearch.augment.ops import arg_value
    from policysearch.policy.export_code import level_value

    for name, spec in OPS.items():
        if spec.timm_level is None or spec.neutral is None and name != "Solarize":
            continue
        for m in range(31):
            level = level_value(spec.timm_level, m)
            value = arg_value(name, m)
            if name == "Posterize":
                assert int(level / 10 * 4) + 4 == value
            elif name == "Solarize":
                assert int(level / 10 * 256) == -(-value // 1)  # timm's int == ceil(ours)
            elif name == "Rotate":
                assert level / 10 * 30 == pytest.approx(value)
            elif spec.unit == "factor":
                assert 1 + level / 10 * 0.9 == pytest.approx(value)
            elif spec.unit == "shear":
                assert level / 10 * 0.3 == pytest.approx(value)
            else:
                assert level / 10 * (150 / 331) * 32 == pytest.approx(value)


def test_cutout_has_no_exact_timm_route_and_says_why() -> None:
    result = export(MORE["aa_ragged"], "timm")
    assert not result.exact and "no Cutout" in result.differences[0]


def test_tf_models_refusal_names_the_real_scales() -> None:
    result = export(read_policy(EXAMPLES["randaugment"]), "tf-models")
    assert not result.exact
    text = result.differences[0]
    for needle in ("0.1 + 0.18 m", "int(0.4 m) bits", "int(25.6 m)", "translate_const"):
        assert needle in text


def test_cli_export_prints_runnable_code_and_approximations(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "policysearch", "export", *args],
                              capture_output=True, text=True, cwd=tmp_path, timeout=120)

    subset = str(EXAMPLES["randaugment_subset"])
    exact = run(subset, "--to", "timm")
    assert exact.returncode == 0, exact.stderr
    compile(exact.stdout, "stdout", "exec")  # notes are comments: the whole output runs
    approx = run(subset, "--to", "timm", "--approximate")
    assert approx.returncode == 0
    first = approx.stdout.splitlines()[0]
    assert first.startswith("# approximate: timm's rand-m4-n1-p1.0-inc1-mmax9")
    assert "images unchanged per epoch; this policy leaves" in first
    compile(approx.stdout, "stdout", "exec")
    refused = run(subset, "--to", "tf-models")
    assert refused.returncode == 2 and refused.stdout == ""
    assert len(refused.stderr.splitlines()) == 1 and "--approximate" in refused.stderr


def test_policy_format_doc_holds_the_generated_op_table() -> None:
    from policysearch.augment.optable import markdown_table

    assert markdown_table() in (ROOT / "docs" / "policy-format.md").read_text()


@pytest.mark.parametrize("name", ["ra_op_magnitudes", "randaugment_groups"])
def test_per_op_magnitudes_are_exported_op_by_op(name: str) -> None:
    """torchvision draws each op at its own magnitude, timm gives each AugmentOp its own; the
    code says so in data a reader can check against the policy."""
    from policysearch.policy.export_code import level_value

    policy = MORE[name] if name in MORE else read_policy(EXAMPLES[name])
    tv = export(policy, "torchvision")
    assert tv.exact
    namespace = ast.parse(tv.code)
    cls = next(n for n in namespace.body if isinstance(n, ast.ClassDef))
    assigned = {t.id: ast.literal_eval(n.value) for n in cls.body if isinstance(n, ast.Assign)
                for t in n.targets}
    assert assigned["magnitudes"] == {op: m for op, m in policy.op_magnitudes}
    assert f"self.magnitudes.get(name, {float(policy.magnitude)!r})" in tv.code
    timm = export(policy, "timm")
    assert timm.exact
    for line in timm.code.splitlines():
        if line.startswith("    op(") and line.split("#")[-1].strip() in OPS:
            op = line.split("#")[-1].strip()
            spec = OPS[op]
            level = level_value(spec.timm_level, policy.magnitude_of(op))
            assert f"op({spec.timm!r}, 1.0, {level!r}" in line, line
    if not policy.flips:
        assert any("without a horizontal flip" in note for note in tv.notes + timm.notes)
