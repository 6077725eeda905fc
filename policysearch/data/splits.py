"""The training images carved four ways, seeded and class-stratified.

- ``val``: search validation, what the trials optimise;
- ``selection``: what the race chooses the winner on (no trial ever scores on it);
- ``target``: the target budget's training images (``target.train_size`` of the rest);
- ``proxy``: the proxy's training images, a stratified subset of the target's.

Sizes given as ``"auto"`` (the defaults) are chosen from the training part here, by
``auto_sizes``: fractions of its images with a floor per class, so a folder of 80 images and
CIFAR-10's 50,000 both get splits that fit. Only the training part of the dataset is loaded
here: the test split is ``validate``'s alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from policysearch.data.datasets import load_part
from policysearch.errors import DataError, PolicySearchWarning

ROLES = ("proxy", "target", "val", "selection")
AUTO = "auto"
AUTO_VAL = (0.20, 5000)
"""Automatic search-validation size: this fraction of the training part, at most this many."""
AUTO_SELECTION = (0.15, 2000)
"""Automatic selection size (the race's split): the same rule."""
AUTO_FLOOR = 5
"""Images a class, at least, in each automatic held-out split (validation, selection)."""
AUTO_PROXY = (2000, 0.25, 10000)
"""Automatic proxy size: all the target's images up to the first number, else this fraction
of them (at least the first number), at most the last."""


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
    sizing: str = ""
    """Which sizes were chosen automatically, and why (empty when all were given)."""

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.val.x.shape[1:])  # type: ignore[return-value]

    def training(self, budget: str) -> Split:
        """The training images of the ``proxy`` or ``target`` budget."""
        return self.proxy if budget == "proxy" else self.target


def carve(labels: np.ndarray, *, val_size: int, selection_size: int, target_size: int | None,
          proxy_size: int | None, seed: int = 0,
          selection_max: int = 0) -> dict[str, np.ndarray]:
    """Sorted index sets per role: val, selection and target disjoint, proxy inside target.

    ``selection_size`` images are set apart before the target is drawn; when the target has a
    fixed size and leaves images unused, the selection split then grows with them, stratified,
    up to ``selection_max`` images in all (drawn last, so the other splits do not change)."""
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
    unused = np.setdiff1d(rest, target)
    extra = min(len(unused), selection_max - selection_size)
    if extra > 0:
        selection = np.concatenate([selection, stratified(labels, unused, extra, rng)])
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


def auto_sizes(labels: np.ndarray, *, val_size: int | str, selection_size: int | str,
               target_size: int | None, proxy_size: int | str | None
               ) -> tuple[int, int, int | None, str]:
    """``val_size``, ``selection_size`` and ``proxy_size`` with ``"auto"`` replaced by numbers
    (a proxy of all the target's images is ``None``), and a sentence saying what was chosen
    and why ("" when nothing was automatic).

    Validation and selection: a fraction of the training part (``AUTO_VAL``, ``AUTO_SELECTION``)
    with at least ``AUTO_FLOOR`` images a class, so that each class is scored; the target gets
    the rest; the proxy is all of the target's images on a small dataset (they are cheap) and a
    quarter of them on a large one (``AUTO_PROXY``). Auto sizes that cannot fit are refused in
    one line naming the dataset's size.
    """
    n = len(labels)
    classes = len(np.unique(labels))
    floor = AUTO_FLOOR * classes
    said = []

    def held(value: int | str, rule: tuple[float, int], key: str, what: str) -> int:
        if value != AUTO:
            return int(value)
        fraction, cap = rule
        size = max(floor, min(cap, round(fraction * n)))
        said.append(f"{what} {size} ({key}: {fraction:.0%} of {n}, at least {AUTO_FLOOR} a "
                    f"class, at most {cap})")
        return size

    val = held(val_size, AUTO_VAL, "data.val_size", "search validation")
    selection = held(selection_size, AUTO_SELECTION, "data.selection_size", "selection")
    if said and val + selection >= n:
        raise DataError(f"the training part has {n} images in {classes} classes: too few for "
                        f"automatic split sizes (validation {val} + selection {selection}, at "
                        f"least {AUTO_FLOOR} images a class each, must leave images to train "
                        "on); add images, or give --val-size and --selection-size")
    proxy = None if proxy_size is None or proxy_size == AUTO else int(proxy_size)
    if proxy_size == AUTO:
        pool = target_size if target_size is not None else n - val - selection
        everything, fraction, cap = AUTO_PROXY
        if pool <= everything:
            proxy = None
            said.append(f"proxy all {pool} target images (data.train_size: all of them up to "
                        f"{everything})")
        else:
            proxy = min(cap, max(everything, round(fraction * pool)))
            said.append(f"proxy {proxy} of the {pool} target images (data.train_size: "
                        f"{fraction:.0%}, at least {everything}, at most {cap})")
    note = ""
    if said:
        note = (f"split sizes chosen for {n} training images in {classes} classes: "
                + "; ".join(said) + "; the target trains on "
                + ("the rest" if target_size is None else f"{target_size} images"))
    return val, selection, proxy, note


def load_splits(experiment: Any) -> Splits:
    """The experiment's four splits of its dataset's training part.

    Automatic sizes (``"auto"``) are chosen here and written back into ``experiment``, so the
    study record and the exported policy carry the numbers the splits were carved with.
    """
    exp = experiment
    part = load_part(exp.dataset, "train", exp.data.data_dir, exp.data.image_size)
    val, selection, proxy, note = auto_sizes(
        part.y, val_size=exp.data.val_size, selection_size=exp.data.selection_size,
        target_size=exp.target.train_size, proxy_size=exp.data.train_size)
    exp.data.val_size, exp.data.selection_size, exp.data.train_size = val, selection, proxy
    index = carve(part.y, val_size=exp.data.val_size, selection_size=exp.data.selection_size,
                  target_size=exp.target.train_size, proxy_size=exp.data.train_size,
                  seed=exp.data.split_seed, selection_max=exp.data.selection_max)
    grown = len(index["selection"]) - exp.data.selection_size
    if grown > 0:
        note = "; ".join(filter(None, [note, (
            f"selection grown from {exp.data.selection_size} to {len(index['selection'])} "
            f"images with training images no split uses (data.selection_max "
            f"{exp.data.selection_max})")]))
    sparse = too_few(part.y, index, part.classes)
    if sparse:
        import warnings

        warnings.warn(f"dataset {exp.dataset}: {sparse}", PolicySearchWarning, stacklevel=2)
    parts = {role: Split(part.x[i], part.y[i]) for role, i in index.items()}
    return Splits(**parts, classes=part.classes, dataset=exp.dataset,
                  fingerprint=fingerprint(part.x, part.y, part.classes), sizing=note)


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
