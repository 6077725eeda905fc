"""Train a small PyTorch model with an exported policy, through either PyTorch route.

    python examples/train_pytorch.py policies/cifar10-randaugment_subset.json \
        [--loader transform|torchvision] [--epochs 2] [--images 2000] [--workers 2] \
        [--data-dir ../shared/data]

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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data-dir")
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, Dataset

    import policysearch
    from policysearch.data.datasets import load_part

    train = load_part("cifar10", "train", args.data_dir)
    x, y = train.x[: args.images], train.y[: args.images]

    if args.loader == "transform":
        # The one line: the policy, plus the crop and flip it was searched with.
        augment = policysearch.load_transform(args.policy, base=True, seed=0)

        def to_tensor(image: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(augment(image)).permute(2, 0, 1).float() / 255.0
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
    loader = DataLoader(Images(), batch_size=128, shuffle=True, num_workers=args.workers)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(64, len(train.classes)),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    accuracy = 0.0
    for epoch in range(args.epochs):
        correct = seen = 0
        for images, labels in loader:
            logits = model(images)
            loss = nn.functional.cross_entropy(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(labels)
        accuracy = correct / seen
        print(f"epoch {epoch + 1}: train accuracy {accuracy:.3f} (augmented, {args.loader})")
    return accuracy


if __name__ == "__main__":
    main()
