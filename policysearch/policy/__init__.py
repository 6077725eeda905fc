"""The policy: what a search exports and training code loads.

Modules: ``definition`` (the ``Policy`` and its constructors), ``fileformat`` (its versioned JSON
file, validated), ``baselines`` (the stock policies by name), ``layer`` (the Keras layer and
``load_policy``), ``transform`` (``load_transform``, framework-free), ``explain`` (readable form),
``exporters`` + ``export_code`` (torchvision, timm, tf-models code).
"""

from policysearch.policy.definition import (
    Policy,
    autoaugment,
    crop_only,
    no_augment,
    randaugment,
    read_policy,
    trivialaugment,
    write_policy,
)

__all__ = ["Policy", "autoaugment", "crop_only", "no_augment", "randaugment", "read_policy",
           "trivialaugment", "write_policy"]
