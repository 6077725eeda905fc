"""A policy as a plain Python callable: PIL ops, a NumPy generator, no TensorFlow, no torch.

``load_transform(path)`` returns a ``PolicyTransform`` that applies a policy file to one image
(a PIL image, or an ``(H, W)`` / ``(H, W, C)`` uint8 array) and returns the same kind. It draws
exactly what ``PolicyAugmentation`` draws per image (see ``policysearch/augment/layer.py``):

- the base augmentation first, when asked: a random crop after padding each side with
  ``crop_padding`` zero pixels (offsets uniform in ``-p..p``), then a horizontal flip (p = 0.5);
  a policy whose ``base`` turns the crop (``crop_padding: 0``) or the flip (``flip: false``) off
  turns it off here too, as in the layer;
- RandAugment: ``num_ops`` ops, each uniform from ``ops`` (with replacement), at ``magnitude``
  (or the op's own, from ``op_magnitudes``) plus ``magnitude_std`` times a standard normal,
  clipped to 0..30, drawn per op;
- TrivialAugment: one op uniform from ``ops`` at a magnitude uniform in [0, 30);
- AutoAugment: one sub-policy uniform; each step applies with its probability;
- each op a sign of +1 or -1 (p = 0.5; used by signed ops) and, for Cutout, a centre uniform
  over the image; ops fill uncovered pixels with the policy's ``fill``.

Each op is the PIL call at ``arg_value`` (``policysearch.augment.pil.apply_pil``), pixel-equal to
``policysearch.augment.apply_op``. Random numbers come from the transform's own
``numpy.random.Generator``: ``seed`` makes a process's stream reproducible; a copy running in
another process (a ``DataLoader`` worker, a ``multiprocessing`` pool) reseeds itself on its first
call there, from the torch worker seed when torch's ``get_worker_info()`` names one (so each
epoch's workers draw anew) and from the process id otherwise.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np
from PIL import Image

from policysearch.augment.ops import MAX_LEVEL, OPS, arg_value
from policysearch.augment.pil import apply_pil
from policysearch.policy.definition import Policy, read_policy

Step = tuple[str, float, float, tuple[float, float]]  # op, level, sign, Cutout position


class PolicyTransform:
    """Apply ``policy`` to one image per call; picklable, reseeded per worker process."""

    def __init__(self, policy: Policy, *, crop_padding: int = 0, flip: bool = False,
                 seed: int | None = None) -> None:
        if isinstance(crop_padding, bool) or not isinstance(crop_padding, int) or crop_padding < 0:
            raise ValueError("`crop_padding` must be a non-negative integer. "
                             f"Received: crop_padding={crop_padding!r}")
        self.policy = policy
        self.crop_padding = crop_padding
        self.flip = bool(flip)
        self.seed = seed
        self._origin_pid = os.getpid()
        self._pid: int | None = None
        self._rng: np.random.Generator | None = None

    def __repr__(self) -> str:
        base = f", crop_padding={self.crop_padding}, flip={self.flip}" if self.base else ""
        return f"PolicyTransform({self.policy!r}{base}, seed={self.seed})"

    @property
    def base(self) -> bool:
        return bool(self.crop_padding or self.flip)

    # -- randomness ----------------------------------------------------------------------------

    def reseed(self, seed: int | None) -> None:
        """Restart this process's random stream from ``seed`` (None: fresh OS entropy)."""
        self.seed = seed
        self._origin_pid = os.getpid()
        self._rng = None

    @property
    def rng(self) -> np.random.Generator:
        """The generator of the current process (created, or reseeded, on first use)."""
        pid = os.getpid()
        if self._rng is None or self._pid != pid:
            self._rng = np.random.default_rng(self._entropy(pid))
            self._pid = pid
        return self._rng

    def _entropy(self, pid: int) -> Any:
        worker_seed = _torch_worker_seed()
        if worker_seed is not None:
            return worker_seed if self.seed is None else [self.seed, worker_seed]
        if pid == self._origin_pid:
            return self.seed
        return None if self.seed is None else [self.seed, pid]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_rng"] = state["_pid"] = None  # a copy reseeds in its own process
        return state

    # -- drawing ------------------------------------------------------------------------------

    def draw(self) -> list[Step]:
        """One image's ops: ``(op, level, sign, position)`` for each op it applies, in order."""
        rng, policy = self.rng, self.policy
        steps: list[Step] = []

        def step(name: str, level: float) -> None:
            sign = -1.0 if rng.random() < 0.5 else 1.0
            position = (float(rng.random()), float(rng.random()))
            steps.append((name, float(level), sign, position))

        if policy.type == "randaugment":
            for _ in range(policy.num_ops):
                name = policy.ops[rng.integers(len(policy.ops))]
                level = policy.magnitude_of(name)
                if policy.magnitude_std:
                    level = min(max(level + policy.magnitude_std * rng.standard_normal(), 0.0),
                                MAX_LEVEL)
                step(name, level)
        elif policy.type == "trivialaugment":
            step(policy.ops[rng.integers(len(policy.ops))], rng.random() * MAX_LEVEL)
        elif policy.type == "autoaugment":
            for name, prob, magnitude in policy.sub_policies[
                    rng.integers(len(policy.sub_policies))]:
                if rng.random() < prob:
                    step(name, magnitude)
        return steps

    # -- applying -----------------------------------------------------------------------------

    def apply(self, image: Image.Image, steps: list[Step]) -> Image.Image:
        """Apply drawn ``steps`` to a PIL image (no base augmentation)."""
        width, height = image.size
        for name, level, sign, position in steps:
            if OPS[name].kind == "identity":
                continue
            value = arg_value(name, level, height, width, sign=sign)
            image = apply_pil(image, name, value, self.policy.fill, position)
        return image

    def crop_flip(self, image: Image.Image) -> Image.Image:
        """The base augmentation: a random padded crop, then a random horizontal flip."""
        rng, pad = self.rng, self.crop_padding if self.policy.crops else 0
        flip = rng.random() < 0.5 and self.policy.flips
        dx, dy = (int(v) for v in rng.integers(-pad, pad + 1, 2))
        if pad and (dx or dy):
            color = 0 if image.mode == "L" else (0,) * len(image.getbands())
            image = image.transform(image.size, Image.AFFINE, (1, 0, dx, 0, 1, dy),
                                    fillcolor=color)
        if self.flip and flip:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        return image

    def __call__(self, image: Any) -> Any:
        pil, array_shape = _to_pil(image)
        if self.base:
            pil = self.crop_flip(pil)
        pil = self.apply(pil, self.draw())
        if array_shape is None:
            return pil
        return np.asarray(pil, dtype=np.uint8).reshape(array_shape)


def _torch_worker_seed() -> int | None:
    """The seed torch gave this DataLoader worker, or None (torch is never imported here)."""
    data = getattr(sys.modules.get("torch.utils.data"), "get_worker_info", None)
    info = data() if data is not None else None
    return None if info is None else int(info.seed)


def _to_pil(image: Any) -> tuple[Image.Image, tuple[int, ...] | None]:
    if isinstance(image, Image.Image):
        if image.mode not in ("L", "RGB"):
            raise ValueError("Expected an RGB or grayscale image (mode 'RGB' or 'L'). "
                             f"Received: mode={image.mode!r}; convert it with image.convert('RGB')")
        return image, None
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"Expected a uint8 image array. Received: dtype={array.dtype}")
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 1):
        return Image.fromarray(array.reshape(array.shape[:2]), "L"), array.shape
    if array.ndim == 3 and array.shape[2] == 3:
        return Image.fromarray(array, "RGB"), array.shape
    raise ValueError("Expected one image as (H, W) or (H, W, C) with C = 1 or 3. "
                     f"Received: shape={array.shape}")


def load_transform(path: str | os.PathLike[str], *, base: bool = False,
                   seed: int | None = None) -> PolicyTransform:
    """Load a policy file as a framework-free callable (one image in, one image out).

    With ``base=True`` it also applies the crop and flip the search trained with (the file's
    ``base``). Use it as a torchvision/``DataLoader`` transform, in a ``tf.data``
    ``numpy_function``, or in any loop.
    """
    policy = read_policy(path)
    return PolicyTransform(policy, seed=seed, **(policy.base_kwargs() if base else {}))
