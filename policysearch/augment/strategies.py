"""How a batch applies one op per image: two strategies, the same pixels.

``dispatch`` runs each op on the images that drew it alone (data-dependent shapes: TensorFlow);
``select`` runs every op on the whole batch and keeps each image's own result (static shapes:
XLA, JAX). Both take the per-image draws of one stage, ``op``, ``level``, ``sign``, ``rand``
(B, 2) and ``fill`` (B,), and ``op_indices``, the ops the caller's graph holds (an image whose op
is not among them passes through).
"""

from __future__ import annotations

from typing import Any

from policysearch.augment import kernels
from policysearch.augment import ops as O


def dispatch(K: Any, images: Any, op: Any, level: Any, sign: Any, rand: Any, fill: Any,
             op_indices: tuple[int, ...]) -> Any:
    """Apply op ``op[i]`` to image ``i``: each op runs on the images that drew it alone.

    For dynamic shapes (TensorFlow): gathers the images of each pixel op and applies the op to
    them; the images of every geometric op go through one warp together, each with its own
    matrix (as in ``select``). One gather then puts every image back in its place, the images
    that drew no op (Identity, or an op the graph does not hold) passing through. Every image
    pays for its own op only, and the graph is small: on a CPU its per-node cost, not the
    pixels, is most of what a batch of small images costs.
    """
    N = K.numpy
    shape = K.shape(images)
    height, width = shape[1], shape[2]
    affine, pixel = _by_kind(op_indices)
    if not affine and not pixel:
        return images
    order, outputs = [], []
    if affine:
        chosen = N.nonzero(drew(K, op, affine))[0]
        x, drawn, lv, sg, fl = (kernels.take_rows(K, v, chosen)
                                for v in (images, op, level, sign, fill))
        matrix = geometric_matrix(K, drawn, lv, sg, height, width, affine)
        outputs.append(kernels.warp(K, x, matrix, fl))
        order.append(chosen)
    for index in pixel:
        spec = O.OPS[O.OP_NAMES[index]]
        chosen = N.nonzero(op == index)[0]
        x, lv, sg, rd, fl = (kernels.take_rows(K, v, chosen)
                             for v in (images, level, sign, rand, fill))
        outputs.append(spec.apply(K, x, spec.arg(K, lv, sg, height, width), rd, fl))
        order.append(chosen)
    unchanged = N.nonzero(N.logical_not(drew(K, op, affine + pixel)))[0]
    outputs.append(kernels.take_rows(K, images, unchanged))
    order.append(unchanged)
    # position p of the outputs holds image order[p]: argsort inverts the permutation
    place = N.argsort(N.concatenate(order, axis=0))
    return kernels.take_rows(K, N.concatenate(outputs, axis=0), place)


def drew(K: Any, op: Any, indices: tuple[int, ...]) -> Any:
    """Per image, whether its drawn op is one of ``indices`` (one lookup in a constant)."""
    member = [1 if i in indices else 0 for i in range(len(O.OP_NAMES))]
    table = K.convert_to_tensor(member, dtype="int32")
    return kernels.take_rows(K, table, op) > 0


def select(K: Any, images: Any, op: Any, level: Any, sign: Any, rand: Any, fill: Any,
           op_indices: tuple[int, ...]) -> Any:
    """Apply op ``op[i]`` to image ``i`` with static shapes (for XLA).

    One warp applies every image's geometric op; each pixel op runs on the whole batch and
    each image keeps the result of the op it drew.
    """
    N = K.numpy
    shape = K.shape(images)
    height, width = shape[1], shape[2]
    affine, pixel = _by_kind(op_indices)
    out = images
    if affine:
        matrix = geometric_matrix(K, op, level, sign, height, width, affine)
        out = kernels.warp(K, images, matrix, fill)
    for index in pixel:
        spec = O.OPS[O.OP_NAMES[index]]
        changed = spec.apply(K, images, spec.arg(K, level, sign, height, width), rand, fill)
        out = N.where(N.reshape(op == index, (-1, 1, 1, 1)), changed, out)
    return out


def geometric_matrix(K: Any, op: Any, level: Any, sign: Any, height: Any, width: Any,
                     affine: tuple[int, ...]) -> Any:
    """Per image, PIL's affine map (B, 6) of its op when that op is one of the geometric ops
    ``affine``, else the identity: one warp then applies every image's geometric op."""
    N = K.numpy
    matrix = kernels.identity_matrix(K, K.shape(op)[0])
    for index in affine:
        spec = O.OPS[O.OP_NAMES[index]]
        kernel = spec.kernel(K, spec.arg(K, level, sign, height, width), height, width)
        matrix = N.where((op == index)[:, None], kernel, matrix)
    return matrix


def _by_kind(op_indices: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``op_indices`` split into the geometric (affine) ops and the pixel ops, in order."""
    kinds = {i: O.OPS[O.OP_NAMES[i]].kind for i in op_indices}
    return (tuple(i for i, k in kinds.items() if k == "affine"),
            tuple(i for i, k in kinds.items() if k == "pixel"))
