"""policysearch: find the augmentation policy that helps your dataset most.

Public API: ``load_policy`` (a policy file as a Keras layer, a ``PolicyAugmentation``),
``load_transform`` (a policy file as a plain Python callable on one image, for PyTorch data
loaders or any loop), ``read_policy`` / ``write_policy`` (policy files as data), ``Policy`` and
its constructors. TensorFlow, Keras,
torch and MLflow are imported only when something needs them.
"""

from typing import Any

from policysearch._version import __version__
from policysearch.policy.definition import (
    Policy,
    autoaugment,
    no_augment,
    randaugment,
    read_policy,
    trivialaugment,
    write_policy,
)

__all__ = [
    "Policy",
    "PolicyAugmentation",
    "__version__",
    "autoaugment",
    "load_policy",
    "load_transform",
    "no_augment",
    "randaugment",
    "read_policy",
    "trivialaugment",
    "write_policy",
]


def __getattr__(name: str) -> Any:
    if name in ("load_policy", "PolicyAugmentation"):  # Keras is imported only here
        from policysearch.policy import layer

        return getattr(layer, name)
    if name == "load_transform":
        from policysearch.policy.transform import load_transform

        return load_transform
    raise AttributeError(f"module 'policysearch' has no attribute {name!r}")
