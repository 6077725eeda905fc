"""The four splits of the training part: disjoint, stratified, seeded, the proxy's inside the
target's; the test part is never loaded by a search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_image_folder

from policysearch.config.experiment import load_experiment
from policysearch.data.datasets import load_part
from policysearch.data.splits import carve, load_splits
from policysearch.errors import DataError

LABELS = np.array([0] * 100 + [1] * 50 + [2] * 30 + [3] * 20)  # 200 images, imbalanced
np.random.default_rng(7).shuffle(LABELS)


def four(seed: int = 0, **sizes: int | None) -> dict[str, np.ndarray]:
    args = {"val_size": 40, "selection_size": 20, "target_size": 100, "proxy_size": 50, **sizes}
    return carve(LABELS, seed=seed, **args)


def test_splits_are_disjoint_stratified_and_nested() -> None:
    idx = four()
    assert {k: len(v) for k, v in idx.items()} == {"val": 40, "selection": 20, "target": 100,
                                                  "proxy": 50}
    assert not set(idx["val"]) & set(idx["selection"])
    assert not (set(idx["val"]) | set(idx["selection"])) & set(idx["target"])
    assert set(idx["proxy"]) <= set(idx["target"]), "the proxy trains on the target's images"
    assert np.bincount(LABELS[idx["val"]]).tolist() == [20, 10, 6, 4]
    assert np.bincount(LABELS[idx["selection"]]).tolist() == [10, 5, 3, 2]
    assert np.bincount(LABELS[idx["proxy"]]).tolist() == [25, 13, 7, 5]  # ties: stable order
    assert all(list(v) == sorted(v) for v in idx.values())


def test_all_the_rest_is_the_target_when_its_size_is_none() -> None:
    idx = four(target_size=None, proxy_size=None)
    together = np.concatenate([idx["val"], idx["selection"], idx["target"]])
    assert sorted(together.tolist()) == list(range(len(LABELS)))
    assert np.array_equal(idx["proxy"], idx["target"])


def test_splits_are_seeded() -> None:
    a, b, c = four(0), four(0), four(1)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["val"], c["val"]) and not np.array_equal(a["proxy"], c["proxy"])


@pytest.mark.parametrize("sizes, shown", [
    ({"val_size": 190}, "val_size=190"),
    ({"target_size": 141}, "target.train_size=141"),
    ({"proxy_size": 0}, "data.train_size=0"),
    ({"proxy_size": 120}, "data.train_size=120"),
])
def test_bad_split_sizes_name_the_value(sizes: dict[str, int], shown: str) -> None:
    with pytest.raises(DataError) as err:
        four(**sizes)
    assert shown in str(err.value)


def test_load_splits_never_returns_test_images(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("POLICYSEARCH_CACHE_DIR", str(tmp_path / "cache"))
    root = write_image_folder(tmp_path / "ds", classes=3, per_class=12, size=8,
                              test_per_class=5)
    exp = load_experiment(None, dataset=str(root), overrides={
        "data.val_size": 9, "data.selection_size": 6, "data.train_size": 9,
        "target.train_size": 21})
    splits = load_splits(exp)
    # Only the training part was decoded: no test-part cache file exists.
    cached = sorted(p.name for p in (tmp_path / "cache").glob("*.npz"))
    assert cached and all(name.endswith("-train.npz") for name in cached), cached
    train_part = load_part(str(root), "train")
    test_part = load_part(str(root), "test")
    assert splits.image_shape == (8, 8, 3) and splits.classes == train_part.classes
    seen = [x.tobytes() for s in (splits.val, splits.selection, splits.target) for x in s.x]
    assert len(seen) == len(set(seen)) == 36, "no image twice"
    assert set(seen) <= {x.tobytes() for x in train_part.x}
    assert not set(seen) & {x.tobytes() for x in test_part.x}
    assert {x.tobytes() for x in splits.proxy.x} <= {x.tobytes() for x in splits.target.x}
    assert len(splits.fingerprint) == 32


def test_cifar10_splits(data_dir: Path) -> None:
    exp = load_experiment("cifar10", overrides={"data.data_dir": str(data_dir)})
    splits = load_splits(exp)
    # the proxy is the one `calibrate` picked (experiments/results/cifar10-calibration.yaml)
    assert len(splits.proxy) == exp.data.train_size == 500 and len(splits.target) == 1000
    raw = load_experiment("cifar10", overrides={"data.data_dir": str(data_dir)}, calibrated=False)
    assert len(load_splits(raw).proxy) == raw.data.train_size == 250, "the file's own proxy"
    assert np.bincount(splits.target.y).tolist() == [100] * 10
    # 1,000 set apart before the target, grown to data.selection_max (10,000) with images no
    # split uses; the target and the proxy are the images they were before it grew
    assert np.bincount(splits.selection.y).tolist() == [1000] * 10
    assert exp.data.selection_max == 10000 and exp.data.selection_size == 1000
    small = load_experiment("cifar10", overrides={"data.data_dir": str(data_dir),
                                                  "data.selection_max": 0})
    unchanged = load_splits(small)
    assert len(unchanged.selection) == 1000
    assert np.array_equal(unchanged.target.x, splits.target.x)
    assert np.array_equal(unchanged.proxy.y, splits.proxy.y)
    assert not set(map(bytes, splits.selection.x[:50])) & set(map(bytes, splits.target.x))
