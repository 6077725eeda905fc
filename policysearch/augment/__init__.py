"""Augmentation ops: the op table, its batched kernels and the PIL reference.

``OPS`` (from ``policysearch.augment.ops``) is the table of ops, the single source of op facts;
``apply_op`` applies one op deterministically (the form tests compare with PIL). The Keras layer
that applies a whole policy is ``policysearch.policy.layer.PolicyAugmentation``. Keras is
imported only when ``apply_op`` is called.
"""

from __future__ import annotations

from typing import Any

from policysearch.augment.ops import MAX_LEVEL, OP_NAMES, OPS, RANDAUGMENT_OPS, OpSpec

__all__ = ["MAX_LEVEL", "OPS", "OP_NAMES", "RANDAUGMENT_OPS", "OpSpec", "apply_op"]


def apply_op(
    images: Any,
    name: str,
    magnitude: Any,
    sign: Any = 1,
    *,
    fill: float = 128,
    position: tuple[float, float] = (0.5, 0.5),
) -> Any:
    """Apply op ``name`` at ``magnitude`` (0..30, a float or one per image) to a batch.

    ``images`` is ``(B, H, W, C)`` with values in [0, 255] (uint8 or float; C = 1 or 3); the
    result is float32 in [0, 255], rounded to integers as PIL's uint8 images are. ``sign`` (+1
    or -1, or one per image) picks the direction of a signed op: +1 is the same direction as
    PIL for the same argument. ``position`` places Cutout's square (fractions of width, height).
    Runs with the current Keras backend, or with TensorFlow inside a tf.data/tf.function graph.
    """
    import numpy as np
    from keras.src.utils.backend_utils import DynamicBackend, in_tf_graph

    from policysearch.augment.ops import check_op_names

    check_op_names([name])
    K = DynamicBackend()
    if in_tf_graph():
        K.set_backend("tensorflow")
    images = K.convert_to_tensor(images)
    shape = tuple(K.shape(images))
    if len(shape) != 4:
        raise ValueError("Expected a batch of images of rank 4 (B, H, W, C). "
                         f"Received: shape={shape}")
    if isinstance(shape[3], int) and shape[3] not in (1, 3):
        raise ValueError("Expected 1 or 3 channels (grayscale or RGB). "
                         f"Received: channels={shape[3]}")
    if isinstance(shape[0], int) and shape[0] == 0:
        raise ValueError(f"Expected at least one image. Received: an empty batch, shape={shape}")
    batch = shape[0]
    if not K.is_tensor(magnitude):
        m = np.asarray(magnitude, dtype="float32")
        if m.size == 0 or np.any(~np.isfinite(m)) or np.any(m < 0) or np.any(m > MAX_LEVEL):
            raise ValueError(
                f"`magnitude` must be in [0, {MAX_LEVEL:g}] (torchvision's 31-bin scale). "
                f"Received: magnitude={magnitude}"
            )
    if not K.is_tensor(sign):
        s = np.asarray(sign, dtype="float32")
        if np.any((s != 1) & (s != -1)):
            raise ValueError(f"`sign` must be +1 or -1. Received: sign={sign}")
    level = K.numpy.broadcast_to(K.cast(magnitude, "float32"), (batch,))
    sign = K.numpy.broadcast_to(K.cast(sign, "float32"), (batch,))
    images = K.numpy.clip(K.numpy.round(K.cast(images, "float32")), 0.0, 255.0)
    rand = K.numpy.broadcast_to(K.convert_to_tensor(np.asarray(position, "float32")), (batch, 2))
    fill_t = K.numpy.broadcast_to(K.cast(fill, "float32"), (batch,))
    spec = OPS[name]
    return spec.apply(K, images, spec.arg(K, level, sign, shape[1], shape[2]), rand, fill_t)
