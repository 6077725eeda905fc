"""Every printed snippet against the real torchvision and timm, on real CIFAR-10 images.

Run with ``make test-interop`` (installs the ``interop`` extra). Per op: the snippet's op equals
policysearch's at every bin and sign. Per policy: the snippet's distribution matches
``load_transform``'s (which ``tests/test_transform.py`` ties to the Keras layer). The stock
``--approximate`` forms run without crashing, and the share of images they leave unchanged is
measured. A PyTorch ``DataLoader`` with 2 workers runs ``load_transform``.
"""

from __future__ import annotations

import random
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_examples import above_chance, example
from test_transform import P_MIN, ks_pvalues, statistics

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("timm")

from policysearch import randaugment, read_policy  # noqa: E402
from policysearch.augment import OP_NAMES, OPS, apply_op  # noqa: E402
from policysearch.augment.ops import arg_value  # noqa: E402
from policysearch.augment.pil import apply_pil  # noqa: E402
from policysearch.policy.export_code import timm_op  # noqa: E402
from policysearch.policy.exporters import export  # noqa: E402
from policysearch.policy.transform import PolicyTransform  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = {path.stem: path for path in sorted((ROOT / "examples" / "policies").glob("*.json"))}
TARGETS = ("torchvision", "timm")
SNIPPETS: dict[tuple[str, str, bool], types.ModuleType] = {}


def snippet(policy: str, target: str, approximate: bool = False) -> types.ModuleType:
    """The printed code of ``policysearch export``, run as a module (cached)."""
    key = (policy, target, approximate)
    if key not in SNIPPETS:
        args = [sys.executable, "-m", "policysearch", "export", str(EXAMPLES[policy]),
                "--to", target] + (["--approximate"] if approximate else [])
        result = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert result.returncode == 0, result.stderr
        module = types.ModuleType(f"snippet_{policy}_{target}")
        exec(compile(result.stdout, f"<{' '.join(args[3:])}>", "exec"), module.__dict__)
        SNIPPETS[key] = module
    return SNIPPETS[key]


def tolerance_ok(name: str, diff: np.ndarray) -> bool:
    """AutoContrast in torchvision/timm is PIL's: one level off on under 1% of pixels."""
    if name == "AutoContrast":
        return diff.max() <= 1 and np.mean(diff > 0) <= 0.01
    return diff.max() == 0


def ours(images: np.ndarray, name: str, level: float, sign: float,
         position: tuple[float, float] = (0.5, 0.5)) -> np.ndarray:
    return np.asarray(apply_op(images, name, level, sign, position=position)).astype("uint8")


# ----------------------------------------------------------------------------------------------
# Per op, every bin and sign


@pytest.mark.parametrize("name", OP_NAMES)
def test_torchvision_snippet_ops_equal_ours(name: str, cifar_images: np.ndarray,
                                            report: list) -> None:
    module = snippet("trivialaugment", "torchvision")
    if name in ("Cutout", "Invert"):  # not in TrivialAugment's 14: take a policy that has them
        module = _module_with(name)
    images = cifar_images[:16]
    worst = 0.0
    for level in range(31):
        for sign in (1.0, -1.0) if OPS[name].signed else (1.0,):
            if name == "Cutout":
                torch.manual_seed(level)
                u = torch.rand(2)
                cx, cy = int(float(u[0]) * 32), int(float(u[1]) * 32)
                expected = ours(images, name, level, sign, ((cx + 0.5) / 32, (cy + 0.5) / 32))
                got = []
                for image in images:
                    torch.manual_seed(level)
                    got.append(np.asarray(module.apply_op(Image.fromarray(image), name, level)))
            else:
                expected = ours(images, name, level, sign)
                got = [np.asarray(module.apply_op(Image.fromarray(i), name, sign * level))
                       for i in images]
            diff = np.abs(np.stack(got).astype(int) - expected.astype(int))
            assert tolerance_ok(name, diff), (name, level, sign, diff.max())
            worst = max(worst, float(diff.max()))
    report.append({"check": f"op {name}, bins 0..30 x signs", "policy": "-",
                   "target": "torchvision", "result": f"max abs diff {worst:g}"})


def _module_with(name: str) -> types.ModuleType:
    """A torchvision snippet whose op table holds ``name`` (from a one-op policy)."""
    from policysearch import randaugment
    from policysearch.policy.export_code import torchvision_code

    module = types.ModuleType(f"snippet_{name}")
    exec(compile(torchvision_code(randaugment(1, 9, ops=[name])), name, "exec"),
         module.__dict__)
    return module


@pytest.mark.parametrize("name", [n for n in OP_NAMES if OPS[n].timm])
def test_timm_ops_equal_ours(name: str, cifar_images: np.ndarray, report: list) -> None:
    module = snippet("trivialaugment", "timm")  # for `op` and HPARAMS
    images = cifar_images[:16]
    worst = 0.0
    for level in range(31):
        augment_op = eval(timm_op(name, 1.0, level), module.__dict__)
        for index, image in enumerate(images):
            random.seed(index)
            sign = -1.0 if random.random() > 0.5 else 1.0  # timm's _randomly_negate
            random.seed(index)
            got = np.asarray(augment_op(Image.fromarray(image)))
            expected = ours(image[None], name, level, sign if OPS[name].signed else 1.0)[0]
            diff = np.abs(got.astype(int) - expected.astype(int))
            assert tolerance_ok(name, diff), (name, level, sign, diff.max())
            worst = max(worst, float(diff.max()))
    report.append({"check": f"op {name}, bins 0..30 x signs", "policy": "-",
                   "target": "timm", "result": f"max abs diff {worst:g} ({OPS[name].timm})"})


# ----------------------------------------------------------------------------------------------
# Per policy: the distribution


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("policy", list(EXAMPLES))
def test_snippet_distribution_matches_load_transform(policy: str, target: str,
                                                     cifar_images: np.ndarray,
                                                     report: list) -> None:
    module = snippet(policy, target)
    images = np.concatenate([cifar_images] * 20)
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    theirs = np.stack([np.asarray(module.augment(Image.fromarray(i))) for i in images])
    transform = PolicyTransform(read_policy(EXAMPLES[policy]), seed=1)
    mine = np.stack([transform(i) for i in images])
    pvalues = ks_pvalues(statistics(images, theirs), statistics(images, mine))
    report.append({"check": "distribution (KS, min p)", "policy": policy, "target": target,
                   "result": f"p = {min(pvalues.values()):.3f}"})
    assert min(pvalues.values()) > P_MIN, pvalues


JITTERED = {  # magnitude_std: timm's Gaussian per op, ours per stage (no shipped example has it)
    "ra_mstd (N=2, M=14, std 4, 6 ops)": randaugment(
        2, 14, ops=["Identity", "Rotate", "Color", "Posterize", "Solarize", "TranslateY"],
        magnitude_std=4),
    "ra_mstd_cutout (N=2, M=20, std 6, 4 ops)": randaugment(
        2, 20, ops=["Cutout", "Invert", "ShearX", "Solarize"], magnitude_std=6),
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", list(JITTERED))
def test_jittered_policies_match_in_distribution(name: str, target: str,
                                                 cifar_images: np.ndarray, report: list) -> None:
    result = export(JITTERED[name], target)
    if not result.exact:
        report.append({"check": "distribution (KS, min p)", "policy": name, "target": target,
                       "result": "no exact route: " + "; ".join(result.differences)})
        return
    module = types.ModuleType("jittered")
    exec(compile(result.code, name, "exec"), module.__dict__)
    images = np.concatenate([cifar_images] * 20)
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    theirs = np.stack([np.asarray(module.augment(Image.fromarray(i))) for i in images])
    transform = PolicyTransform(JITTERED[name], seed=1)
    mine = np.stack([transform(i) for i in images])
    pvalues = ks_pvalues(statistics(images, theirs), statistics(images, mine))
    report.append({"check": "distribution (KS, min p)", "policy": name, "target": target,
                   "result": f"p = {min(pvalues.values()):.3f}"})
    assert min(pvalues.values()) > P_MIN, pvalues


@pytest.mark.parametrize("policy", list(EXAMPLES))
def test_torchvision_snippet_takes_tensors(policy: str, cifar_images: np.ndarray) -> None:
    module = snippet(policy, "torchvision")
    out = module.augment(torch.from_numpy(cifar_images[0]).permute(2, 0, 1).contiguous())
    assert isinstance(out, torch.Tensor) and out.shape == (3, 32, 32) and out.dtype == torch.uint8


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("policy", ["randaugment", "randaugment_subset", "trivialaugment"])
def test_stock_forms_run_and_measure_unchanged(policy: str, target: str,
                                               cifar_images: np.ndarray, report: list) -> None:
    module = snippet(policy, target, approximate=True)
    images = np.concatenate([cifar_images] * 8)
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    out = np.stack([np.asarray(module.augment(Image.fromarray(i))) for i in images])
    unchanged = float(np.mean([np.array_equal(a, b) for a, b in zip(out, images)]))
    transform = PolicyTransform(read_policy(EXAMPLES[policy]), seed=1)
    mine = float(np.mean([np.array_equal(transform(i), i) for i in images]))
    report.append({"check": "stock --approximate form: images unchanged", "policy": policy,
                   "target": target, "result": f"{unchanged:.1%} (policy: {mine:.1%})"})


# ----------------------------------------------------------------------------------------------
# PyTorch data loading and the example


def test_load_transform_in_a_dataloader_with_two_workers(cifar_images: np.ndarray) -> None:
    from torch.utils.data import DataLoader, Dataset

    transform = PolicyTransform(read_policy(EXAMPLES["randaugment"]), seed=0)

    class Same(Dataset):
        def __len__(self) -> int:
            return 16

        def __getitem__(self, index: int) -> np.ndarray:
            return transform(cifar_images[0])

    def epoch(seed: int) -> np.ndarray:
        torch.manual_seed(seed)
        loader = DataLoader(Same(), batch_size=8, num_workers=2)
        return torch.cat(list(loader)).numpy()

    first, again, other = epoch(0), epoch(0), epoch(1)
    assert not np.array_equal(first[:8], first[8:]), "the two workers drew the same"
    assert np.array_equal(first, again), "same torch seed, same draws"
    assert not np.array_equal(first, other), "a new epoch seed draws anew"


@pytest.mark.parametrize("loader", ["transform", "torchvision"])
def test_pytorch_example_beats_chance_with_both_loaders(loader: str, data_dir: Path) -> None:
    """A stratified sample (not the first N, all airplanes), copied arrays (no read-only
    warning), and held-out accuracy over chance by three binomial standard errors."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*not writable.*")
        accuracy = example("train_pytorch").main(
            [str(EXAMPLES["randaugment_subset"]), "--loader", loader, "--epochs", "3",
             "--images", "1024", "--test-images", "2000", "--workers", "0",
             "--data-dir", str(data_dir)])
    assert above_chance(accuracy, 10, 2000), accuracy


def test_signed_values_match_the_formula() -> None:
    """The snippet's VALUE table is policysearch's rule (a guard on the printed text)."""
    module = snippet("trivialaugment", "torchvision")
    for name, value in module.VALUE.items():
        for m in (-30, -9, 0, 9, 30):
            if OPS[name].signed or m >= 0:
                assert value(m, 32, 32) == arg_value(name, abs(m), 32, 32,
                                                     sign=1.0 if m >= 0 else -1.0)


def test_cutout_position_rule_matches_apply_pil(cifar_images: np.ndarray) -> None:
    module = _module_with("Cutout")
    image = Image.fromarray(cifar_images[3])
    torch.manual_seed(5)
    u = torch.rand(2)
    torch.manual_seed(5)
    got = np.asarray(module.apply_op(image, "Cutout", 20))
    position = ((int(float(u[0]) * 32) + 0.5) / 32, (int(float(u[1]) * 32) + 0.5) / 32)
    expected = np.asarray(apply_pil(image, "Cutout", arg_value("Cutout", 20), 128, position))
    assert np.array_equal(got, expected)
