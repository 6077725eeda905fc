"""policysearch: find the augmentation policy that helps your dataset most.

Public API: ``load_policy`` (a policy file as a Keras layer), ``read_policy`` / ``write_policy``
(policy files as data), ``Policy`` and its constructors. TensorFlow, Keras and MLflow are
imported only when something needs them.
"""

from policysearch._version import __version__
from policysearch.policy import (
    Policy,
    autoaugment,
    load_policy,
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
    "no_augment",
    "randaugment",
    "read_policy",
    "trivialaugment",
    "write_policy",
]
