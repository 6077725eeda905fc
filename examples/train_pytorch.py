"""Train a small PyTorch model with an exported policy, through either PyTorch route.

    python examples/train_pytorch.py policies/cifar10-randaugment_groups.json \
        [--loader transform|torchvision] [--epochs 3] [--images 2000] [--test-images 1000] \
        [--batch-size 32] [--workers 2] [--data-dir ../shared/data]

It trains on ``--images`` CIFAR-10 training images drawn stratified by class (the archive lists
them sorted by class: its first N are all airplanes), then prints the accuracy on
``--test-images`` held-out test images, unaugmented, beside chance (1 / classes). The data
directory defaults as ``make search`` does: ``$POLICYSEARCH_DATA_DIR``, else ``../shared/data``
beside the project when ``cifar10-images.tar.gz`` is there, else Keras' own download.

``--loader transform``: ``policysearch.load_transform(path, base=True)``, a plain callable on
uint8 arrays or PIL images (no TensorFlow, no torch inside); it reseeds itself in each
``DataLoader`` worker. ``--loader torchvision``: the code that
``policysearch export POLICY --to torchvision`` prints (saved as a module, here executed in
place), after torchvision's own crop and flip for the policy's ``base``. Needs torch and
torchvision (``pip install -e '.[interop]'``).
"""

from __future__ import annotations

import argparse
import os
import types
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PROJECT = Path(__file__).resolve().parent.parent
ARCHIVE = "cifar10-images.tar.gz"


def default_data_dir() -> str | None:
    """As the Makefile: ``$POLICYSEARCH_DATA_DIR``, else ``../shared/data`` beside the project
    when the archive is there; None lets Keras download CIFAR-10."""
    if os.environ.get("POLICYSEARCH_DATA_DIR"):
        return os.environ["POLICYSEARCH_DATA_DIR"]
    shared = PROJECT.parent / "shared" / "data"
    return str(shared) if (shared / ARCHIVE).is_file() else None


def sample(labels: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """``count`` indices with every class in proportion (seeded), not the first ``count``."""
    from policysearch.data.splits import stratified

    pool = np.arange(len(labels))
    return np.sort(stratified(labels, pool, min(count, len(pool)), np.random.default_rng(seed)))


def torchvision_transform(policy_path: str):  # noqa: ANN201 - a torchvision transform
    """The exported torchvision code as a module, composed with the policy's base crop and flip."""
    import torch
    from torchvision.transforms import v2

    from policysearch.policy.definition import read_policy
    from policysearch.policy.exporters import export

    policy = read_policy(policy_path)
    # What `policysearch export POLICY --to torchvision > policy_tv.py` writes; then
    # `from policy_tv import augment` does the same as these three lines.
    module = types.ModuleType("policy_tv")
    exec(compile(export(policy, "torchvision").code, "policy_tv.py", "exec"), module.__dict__)
    base = []
    if policy.base.get("crop_padding"):
        base.append(v2.RandomCrop(32, padding=int(policy.base["crop_padding"])))
    if policy.base.get("flip"):
        base.append(v2.RandomHorizontalFlip())
    return v2.Compose([v2.ToPILImage(), *base, module.augment, v2.PILToTensor(),
                       v2.ToDtype(torch.float32, scale=True)])


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy")
    parser.add_argument("--loader", choices=("transform", "torchvision"), default="transform")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=2000, help="training images (stratified)")
    parser.add_argument("--test-images", type=int, default=1000,
                        help="held-out test images the accuracy is measured on (stratified)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data-dir", default=default_data_dir(),
                        help=f"folder with {ARCHIVE} (default: as the Makefile)")
    args = parser.parse_args(argv)

    import torch
    from torch import nn
    from torch.utils.data import DataLoader, Dataset

    import policysearch
    from policysearch.data.datasets import load_part

    train = load_part("cifar10", "train", args.data_dir)
    test = load_part("cifar10", "test", args.data_dir)
    picks = sample(train.y, args.images)
    x, y = train.x[picks], train.y[picks]
    held_out = sample(test.y, args.test_images)

    if args.loader == "transform":
        # The one line: the policy, plus the crop and flip it was searched with.
        augment = policysearch.load_transform(args.policy, base=True, seed=0)

        def to_tensor(image: np.ndarray) -> torch.Tensor:
            # load_transform returns a read-only array: copy it before torch takes it over
            return torch.from_numpy(augment(image).copy()).permute(2, 0, 1).float() / 255.0
    else:
        pipeline = torchvision_transform(args.policy)

        def to_tensor(image: np.ndarray) -> torch.Tensor:
            return pipeline(torch.from_numpy(image).permute(2, 0, 1).contiguous())

    class Images(Dataset):
        def __len__(self) -> int:
            return len(x)

        def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
            return to_tensor(x[index]), int(y[index])

    torch.manual_seed(0)
    loader = DataLoader(Images(), batch_size=args.batch_size, shuffle=True,
                        num_workers=args.workers)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(64, len(train.classes)),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(args.epochs):
        correct = seen = 0
        model.train()
        for images, labels in loader:
            logits = model(images)
            loss = nn.functional.cross_entropy(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(labels)
        print(f"epoch {epoch + 1}: train accuracy {correct / seen:.3f} (augmented, {args.loader})")
    model.eval()
    with torch.no_grad():  # held-out images, unaugmented
        images = torch.from_numpy(test.x[held_out]).permute(0, 3, 1, 2).float() / 255.0
        predicted = torch.cat([model(batch).argmax(1) for batch in images.split(256)])
    accuracy = float((predicted.numpy() == test.y[held_out]).mean())
    print(f"test accuracy {accuracy:.3f} on {len(held_out)} held-out images "
          f"(chance {1 / len(train.classes):.3f})")
    return accuracy


if __name__ == "__main__":
    main()
