"""What ``auto`` means for the base crop, the batch size and the learning rate: values that
follow the images and the dataset's size."""

from __future__ import annotations


def resolve_crop_padding(value: int | str, side: int) -> int:
    """Pixels of crop padding: ``value``, or for ``"auto"`` an eighth of the image ``side``
    (rounded; 4 px at 32 px, 1 px at 8 px), as CIFAR's 4 px at 32 px."""
    if value == "auto":
        return max(1, round(side / 8))
    return int(value)


AUTO_BATCH = (256, 16, 8)
"""``batch_size: auto``: the largest, the smallest, and the steps per epoch to keep at least."""
AUTO_LR = 0.2
"""``lr: auto`` at batch 256 (scaled by the square root of batch/256)."""


def resolve_batch_size(value: int | str, train_size: int) -> int:
    """Images per step for ``train_size`` training images (never more than them)."""
    if value != "auto":
        return max(1, min(int(value), train_size))
    largest, smallest, steps = AUTO_BATCH
    batch = largest
    while batch > smallest and train_size < steps * batch:
        batch //= 2
    return max(1, min(batch, train_size))


def resolve_lr(value: float | str, batch_size: int) -> float:
    """The peak learning rate at ``batch_size``."""
    if value != "auto":
        return float(value)
    return AUTO_LR * (batch_size / AUTO_BATCH[0]) ** 0.5
