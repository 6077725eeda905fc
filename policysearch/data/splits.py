"""The training images carved four ways, seeded and class-stratified.

- ``val``: search validation, what the trials optimise;
- ``selection``: what the race chooses the winner on (no trial ever scores on it);
- ``target``: the target budget's training images (``target.train_size`` of the rest);
- ``proxy``: the proxy's training images, a stratified subset of the target's.

Only the training part of the dataset is loaded here: the test split is ``validate``'s alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from policysearch.data.datasets import load_part
from policysearch.errors import DataError, PolicySearchWarning

ROLES = ("proxy", "target", "val", "selection")


@dataclass
class Split:
    """Images ``(N, H, W, C)`` uint8 and labels ``(N,)``."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Splits:
    proxy: Split
    target: Split
    val: Split
    selection: Split
    classes: tuple[str, ...]
    dataset: str
    fingerprint: str = ""
    """Of the training part's pixels, labels and class names: changes with the data."""

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.val.x.shape[1:])  # type: ignore[return-value]

    def training(self, budget: str) -> Split:
        """The training images of the ``proxy`` or ``target`` budget."""
        return self.proxy if budget == "proxy" else self.target


def carve(labels: np.ndarray, *, val_size: int, selection_size: int, target_size: int | None,
          proxy_size: int | None, seed: int = 0) -> dict[str, np.ndarray]:
    """Sorted index sets per role: val, selection and target disjoint, proxy inside target."""
    n = len(labels)
    held = val_size + selection_size
    if held >= n:
        raise DataError(f"val_size={val_size} + selection_size={selection_size} must leave "
                        f"training images (the training part has {n} images)")
    rest_size = n - held
    for key, size in (("target.train_size", target_size), ("data.train_size", proxy_size)):
        if size is not None and not 1 <= size <= rest_size:
            raise DataError(f"{key}={size} must be between 1 and {rest_size} (the training part "
                            f"has {n} images, {held} go to validation and selection)")
    if target_size is not None and proxy_size is not None and proxy_size > target_size:
        raise DataError(f"data.train_size={proxy_size} (the proxy's) is above "
                        f"target.train_size={target_size}: the proxy trains on a subset of the "
                        "target's images")
    rng = np.random.default_rng(seed)
    everything = np.arange(n)
    val = stratified(labels, everything, val_size, rng)
    rest = np.setdiff1d(everything, val)
    selection = stratified(labels, rest, selection_size, rng)
    rest = np.setdiff1d(rest, selection)
    target = rest if target_size is None else stratified(labels, rest, target_size, rng)
    proxy = target if proxy_size is None else stratified(labels, target, proxy_size, rng)
    return {"proxy": np.sort(proxy), "target": np.sort(target), "val": np.sort(val),
            "selection": np.sort(selection)}


def stratified(labels: np.ndarray, pool: np.ndarray, size: int,
               rng: np.random.Generator) -> np.ndarray:
    """``size`` indices from ``pool`` with class proportions kept (largest remainders)."""
    classes, counts = np.unique(labels[pool], return_counts=True)
    exact = counts * size / len(pool)
    take = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - take), kind="stable")[: size - take.sum()]:
        take[i] += 1
    chosen = [rng.permutation(pool[labels[pool] == c])[:k] for c, k in zip(classes, take)]
    return np.concatenate(chosen)


def load_splits(experiment: Any) -> Splits:
    """The experiment's four splits of its dataset's training part."""
    exp = experiment
    part = load_part(exp.dataset, "train", exp.data.data_dir, exp.data.image_size)
    index = carve(part.y, val_size=exp.data.val_size, selection_size=exp.data.selection_size,
                  target_size=exp.target.train_size, proxy_size=exp.data.train_size,
                  seed=exp.data.split_seed)
    sparse = too_few(part.y, index, part.classes)
    if sparse:
        import warnings

        warnings.warn(f"dataset {exp.dataset}: {sparse}", PolicySearchWarning, stacklevel=2)
    parts = {role: Split(part.x[i], part.y[i]) for role, i in index.items()}
    return Splits(**parts, classes=part.classes, dataset=exp.dataset,
                  fingerprint=fingerprint(part.x, part.y, part.classes))


def too_few(labels: np.ndarray, index: dict[str, np.ndarray], classes: tuple[str, ...]) -> str:
    """A sentence naming the classes missing from some split (too few images to stratify them
    into every one), or ``""`` when every class is in every split."""
    roles = {"proxy": "the proxy's training", "val": "search validation",
             "selection": "selection"}
    found = []
    for c, name in enumerate(classes):
        missing = [what for role, what in roles.items() if not np.any(labels[index[role]] == c)]
        if missing:
            count = int(np.sum(labels == c))
            found.append(f"{name!r} ({count} image{'s' if count != 1 else ''}) is not in "
                         f"{', '.join(missing)}")
    if not found:
        return ""
    more = f"; {len(found) - 3} more class(es) too" if len(found) > 3 else ""
    return (f"not every class is in every split: {'; '.join(found[:3])}{more}; the search "
            "cannot train or score on a class a split lacks (give the class more images, or the "
            "split more: data.train_size, data.val_size, data.selection_size)")


def fingerprint(x: np.ndarray, y: np.ndarray, classes: tuple[str, ...]) -> str:
    import hashlib

    h = hashlib.sha256(repr((x.shape, list(classes))).encode())
    h.update(np.ascontiguousarray(y).tobytes())
    h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()[:32]
