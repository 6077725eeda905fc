"""policysearch: find the augmentation policy that helps your dataset most.

Public API: ``load_policy`` (a policy file as a Keras layer), ``load_transform`` (a policy file
as a plain Python callable on one image, for PyTorch data loaders or any loop), ``read_policy`` /
``write_policy`` (policy files as data), ``Policy`` and its constructors. TensorFlow, Keras,
torch and MLflow are imported only when something needs them.
"""

from typing import Any

from policysearch._version import __version__
from policysearch.policy import (
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
    if name == "load_policy":  # Keras is imported only here
        from policysearch.augment.layer import load_policy

        return load_policy
    if name == "load_transform":
        from policysearch.transform import load_transform

        return load_transform
    raise AttributeError(f"module 'policysearch' has no attribute {name!r}")
