"""The policy layer: applies any policy to a batch, one random draw per image.

``PolicyAugmentation`` is a Keras ``DataLayer``: inside a ``tf.data`` map it computes with
TensorFlow whatever the Keras backend, and inside a model it runs in the compiled train step of
the current backend. The policy is held as fixed-shape, non-trainable weights (see
``Policy.table``); a ``dynamic`` layer's graph serves every policy, so ``set_policy`` switches
policies without retracing or recompiling.

As in Keras' preprocessing layers, drawing random parameters (``get_random_transformation``)
is separate from applying them (``transform_images``). The random draws come from a
``(B, num_uniforms)`` block of uniform numbers: drawn from the layer's seed generator, or passed
in (``uniforms=``) by a tf.data pipeline that seeds each batch itself.
"""

from __future__ import annotations

import os
from typing import Any

import keras
from keras.src.layers.preprocessing.data_layer import DataLayer

from policysearch.augment import kernels, strategies
from policysearch.augment import ops as O
from policysearch.policy.definition import (
    MAX_STAGES,
    MAX_SUB_POLICIES,
    Policy,
    no_augment,
    read_policy,
)

_PER_STAGE = 8  # op, apply, magnitude, 2 for a normal, sign, 2 for Cutout's position
_HEAD = 4  # sub-policy, flip, 2 for the crop offset
_ALL_OPS = tuple(i for i, name in enumerate(O.OP_NAMES) if O.OPS[name].kind != "identity")


@keras.saving.register_keras_serializable(package="policysearch")
class PolicyAugmentation(DataLayer):
    """Apply an augmentation ``Policy`` in training; pass images through at inference.

    Args:
        policy: the policy (default: none, i.e. only the base crop and flip).
        dynamic: build one graph for every policy, so that ``set_policy`` needs no retrace
            (the search's trainer does this). A non-dynamic layer's graph holds only the
            stages and ops of its policy, which is faster in a tf.data map on a CPU.
        crop_padding: random crop after padding each side with this many zero pixels (0: off).
        flip: random horizontal flip (a policy whose ``base.flip`` is false turns it off: the
            flip is part of the policy's table, so ``set_policy`` switches it without retrace).
        seed: seed of the layer's random draws.
        strategy: how a batch applies one op per image: ``"dispatch"`` (each op runs on the
            images that drew it; needs dynamic shapes) or ``"select"`` (every op runs on the
            whole batch; static shapes, for XLA). ``None``: dispatch under TensorFlow,
            select otherwise.
        max_sub_policies, max_stages: the fixed table shape (see ``Policy.table``).

    Inputs are ``(B, H, W, C)`` images with values in [0, 255] (uint8 or float, C = 1 or 3),
    or one ``(H, W, C)`` image (as in a ``tf.data`` map before ``.batch()``); outputs are
    float32 in [0, 255] of the same shape, rounded to integers as PIL's uint8 images are.
    """

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        dynamic: bool = False,
        crop_padding: int = 0,
        flip: bool = False,
        seed: int | None = None,
        strategy: str | None = None,
        max_sub_policies: int = MAX_SUB_POLICIES,
        max_stages: int = MAX_STAGES,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(crop_padding, bool) or not isinstance(crop_padding, int) or crop_padding < 0:
            raise ValueError(
                "`crop_padding` must be a non-negative integer. "
                f"Received: crop_padding={crop_padding!r}"
            )
        if strategy not in (None, "dispatch", "select"):
            raise ValueError(
                f"`strategy` must be 'dispatch', 'select' or None. Received: strategy={strategy!r}"
            )
        self.crop_padding = crop_padding
        self.flip = bool(flip)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)
        self.strategy = strategy
        self.dynamic_policy = bool(dynamic)
        self.max_sub_policies = max_sub_policies
        self.max_stages = max_stages
        self.policy = policy or no_augment()
        table = self.policy.table(max_sub_policies, max_stages)
        self._table = {
            name: self.add_weight(
                name=name,
                shape=value.shape,
                initializer=keras.initializers.Constant(value),
                trainable=False,
                dtype="float32",
            )
            for name, value in table.items()
        }
        if self.dynamic_policy:
            self._stages, self._ops = max_stages, _ALL_OPS
        else:
            self._stages, self._ops = _structure(self.policy)
        self.built = True  # every weight exists already

    # -- policy ----------------------------------------------------------------------------------

    def set_policy(self, policy: Policy) -> None:
        """Switch to ``policy``: assigns the table weights, nothing is retraced.

        A non-dynamic layer accepts only policies within the stages and ops it was built for.
        """
        if not self.dynamic_policy:
            stages, ops = _structure(policy)
            if stages > self._stages or not set(ops) <= set(self._ops):
                raise ValueError(
                    "This layer's graph holds the stages and ops of its first policy only; "
                    "build it with dynamic=True to switch to any policy. "
                    f"Received: policy={policy!r}"
                )
        for name, value in policy.table(self.max_sub_policies, self.max_stages).items():
            self._table[name].assign(value)
        self.policy = policy

    def set_seed(self, seed: int) -> None:
        """Restart the layer's random stream (same seed, same draws)."""
        self.generator.state.assign(
            keras.ops.convert_to_tensor([seed, 0], dtype=self.generator.state.dtype)
        )

    @property
    def num_uniforms(self) -> int:
        """Columns of the ``uniforms`` block that one call consumes per image."""
        return _HEAD + _PER_STAGE * self.max_stages

    # -- Keras -----------------------------------------------------------------------------------

    def call(self, inputs: Any, training: bool = True, uniforms: Any = None,
             table: dict[str, Any] | None = None) -> Any:
        images = self.backend.cast(inputs, "float32")
        if not training:
            return images
        if len(images.shape) not in (3, 4):
            raise ValueError("Expected an image (H, W, C) or a batch of images of rank 4 "
                             f"(B, H, W, C). Received: shape={tuple(images.shape)}")
        unbatched = len(images.shape) == 3
        if unbatched:  # one image, as a tf.data map before .batch() gives it
            images = self.backend.numpy.expand_dims(images, 0)
            if uniforms is not None:
                uniforms = self.backend.numpy.reshape(uniforms, (1, -1))
        transformation = self.get_random_transformation(images, uniforms=uniforms, table=table)
        out = self.transform_images(images, transformation)
        return out[0] if unbatched else out

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def compute_output_spec(self, inputs: Any, **kwargs: Any) -> Any:
        return keras.KerasTensor(inputs.shape, dtype="float32")

    @property
    def supports_jit(self) -> bool:
        # "dispatch" has data-dependent shapes, which XLA cannot compile.
        if self.strategy is not None:
            return self.strategy == "select"
        return keras.backend.backend() != "tensorflow"

    @supports_jit.setter
    def supports_jit(self, value: bool) -> None:
        pass  # decided by the strategy

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            policy=self.policy.to_dict(),
            dynamic=self.dynamic_policy,
            crop_padding=self.crop_padding,
            flip=self.flip,
            seed=self.seed,
            strategy=self.strategy,
            max_sub_policies=self.max_sub_policies,
            max_stages=self.max_stages,
        )
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PolicyAugmentation:
        config = dict(config)
        config["policy"] = Policy.from_dict(config["policy"], "layer config")
        return cls(**config)

    # -- random parameters -----------------------------------------------------------------------

    def get_random_transformation(self, images: Any, uniforms: Any = None,
                                  table: dict[str, Any] | None = None) -> dict[str, Any]:
        """Draw every random choice for a batch: a dict of per-image tensors.

        ``table``: the policy as tensors (``Policy.table``'s arrays) in place of the layer's own
        weights; a dynamic layer in a ``tf.data`` pipeline that serves many policies reads each
        batch's policy from its element this way.
        """
        K = self.backend
        N = K.numpy
        batch = K.shape(images)[0]
        if uniforms is None:
            seed = self._get_seed_generator(K._backend)
            uniforms = K.random.uniform((batch, self.num_uniforms), seed=seed)
        u = K.cast(uniforms, "float32")
        if table is None:
            t = {name: self.convert_weight(var) for name, var in self._table.items()}
        else:
            t = {name: K.cast(table[name], "float32") for name in self._table}

        sub_weights = N.broadcast_to(t["sub_weights"][None, :], (batch, self.max_sub_policies))
        sub = _inverse_cdf(K, sub_weights, u[:, 0])
        span = 2 * self.crop_padding + 1
        out: dict[str, Any] = {
            "sub_policy": sub,
            "flip": (u[:, 1] < 0.5) & (t["flip"] > 0.5),
            # a policy that turns the crop off keeps its draws (common random numbers)
            "shift": (N.floor(u[:, 2:4] * span) - self.crop_padding) * t["crop"],
            "fill": N.broadcast_to(t["fill"], (batch,)),
        }
        op, apply, level, sign, rand = [], [], [], [], []
        for stage in range(self.max_stages):
            c = _HEAD + _PER_STAGE * stage
            drawn = _inverse_cdf(K, N.take(t["op_weights"][:, stage, :], sub, axis=0), u[:, c])
            op.append(drawn)
            apply.append(u[:, c + 1] < N.take(t["prob"][:, stage], sub, axis=0))
            low = N.take(t["mag_low"][:, stage], sub, axis=0)
            high = N.take(t["mag_high"][:, stage], sub, axis=0)
            own = N.take(t["op_mag"], drawn, axis=0)  # the op's own magnitude, or -1
            centre = N.where(own >= 0.0, own, low + (high - low) * u[:, c + 2])
            normal = N.sqrt(-2.0 * N.log(N.maximum(u[:, c + 3], 1e-7))) * N.cos(
                6.283185307179586 * u[:, c + 4]
            )
            jitter = t["mag_std"] * normal
            level.append(N.clip(centre + jitter, 0.0, O.MAX_LEVEL))
            sign.append(N.where(u[:, c + 5] < 0.5, -1.0, 1.0))
            rand.append(u[:, c + 6 : c + 8])
        out.update(
            op=N.stack(op, axis=1),
            apply=N.stack(apply, axis=1),
            level=N.stack(level, axis=1),
            sign=N.stack(sign, axis=1),
            rand=N.stack(rand, axis=1),
        )
        return out

    # -- application -----------------------------------------------------------------------------

    def transform_images(self, images: Any, transformation: dict[str, Any]) -> Any:
        """Apply drawn parameters: base crop and flip, then each stage's op per image."""
        K = self.backend
        N = K.numpy
        _check_images(K, images)
        images = N.clip(N.round(K.cast(images, "float32")), 0.0, 255.0)
        t = transformation
        if self.crop_padding or self.flip:
            images = self._crop_flip(images, t["flip"], t["shift"])
        strategy = self.strategy or ("dispatch" if K.name == "tensorflow" else "select")
        for stage in range(self._stages):
            op = N.where(t["apply"][:, stage], t["op"][:, stage], 0)
            args = (op, t["level"][:, stage], t["sign"][:, stage], t["rand"][:, stage], t["fill"])
            if strategy == "select":
                images = strategies.select(K, images, *args, self._ops)
            elif self.dynamic_policy:
                # Skip a stage that no image applies (RandAugment with N below max_stages).
                images = K.cond(N.any(op != 0),
                                lambda x=images, a=args: strategies.dispatch(K, x, *a, self._ops),
                                lambda x=images: x)
            else:
                images = strategies.dispatch(K, images, *args, self._ops)
        return images

    def _crop_flip(self, images: Any, flip: Any, shift: Any) -> Any:
        K = self.backend
        N = K.numpy
        width = K.cast(K.shape(images)[2], "float32")
        one = N.ones_like(shift[:, 0])
        a = N.where(flip, -1.0, 1.0) if self.flip else one
        c = N.where(a < 0, width, 0.0) + shift[:, 0]
        matrix = N.stack([a, 0.0 * one, c, 0.0 * one, one, shift[:, 1]], axis=1)
        return kernels.warp(K, images, matrix, 0.0 * one)


def _structure(policy: Policy) -> tuple[int, tuple[int, ...]]:
    """The stages and op indices a graph needs for ``policy``."""
    ops = tuple(i for i in _ALL_OPS if O.OP_NAMES[i] in policy.ops)
    return policy.num_stages, ops


def _inverse_cdf(K: Any, weights: Any, u: Any) -> Any:
    """Per row, the index drawn from ``weights`` (B, K) by uniforms ``u`` (B,)."""
    N = K.numpy
    cdf = N.cumsum(weights, axis=-1)
    index = N.sum(K.cast(cdf <= u[:, None] * cdf[:, -1:], "int32"), axis=-1)
    positions = N.arange(K.shape(weights)[1], dtype="int32")[None, :]
    last = N.max(N.where(weights > 0, positions, 0), axis=-1)
    return N.minimum(index, last)


def _check_images(K: Any, images: Any) -> None:
    shape = K.shape(images)
    if len(shape) != 4:
        raise ValueError(
            f"Expected a batch of images of rank 4 (B, H, W, C). Received: shape={tuple(shape)}"
        )
    if isinstance(shape[3], int) and shape[3] not in (1, 3):
        raise ValueError(
            f"Expected 1 or 3 channels (grayscale or RGB). Received: channels={shape[3]}"
        )


def load_policy(path: str | os.PathLike[str], *, base: bool = False,
                seed: int | None = None) -> PolicyAugmentation:
    """Load a policy file as a Keras layer (``policysearch.policy.layer.PolicyAugmentation``).

    The layer applies the policy in training (``training=True``, as in ``model.fit`` or a
    ``tf.data`` map) and passes images through unchanged at inference. With ``base=True`` it also
    applies the crop and flip that the search trained with (recorded in the file's ``base``).
    The policy itself is the layer's ``policy`` attribute.
    """
    policy = read_policy(path)
    return PolicyAugmentation(policy, seed=seed, **(policy.base_kwargs() if base else {}))
