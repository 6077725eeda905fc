"""The commands that read a policy file: ``show``, ``export`` and ``preview``.

``show`` and ``export`` import neither TensorFlow nor MLflow, so they answer at once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from policysearch.cli.output import quiet_warnings, say
from policysearch.errors import PolicySearchError
from policysearch.paths import write_atomic

PREVIEW_BYTES = 256 << 20
"""Largest preview grid (RGB bytes) drawn."""


def cmd_show(args: argparse.Namespace) -> int:
    from policysearch.policy.definition import read_policy
    from policysearch.policy.explain import show_lines

    for line in show_lines(read_policy(args.policy), args.epochs or 0):
        say(line)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from policysearch.policy.definition import read_policy
    from policysearch.policy.exporters import export

    result = export(read_policy(args.policy), args.to)
    if args.approximate and result.approximate:
        say(f"# approximate: {result.distance}")
        say(result.approximate)
        return 0
    if result.exact:
        for note in result.notes:
            say(f"# note: {note}")
        say(result.code)
        return 0
    raise PolicySearchError(f"{args.to} cannot express this policy exactly: "
                            + "; ".join(result.differences)
                            + " (pass --approximate for the nearest stock form)")


def cmd_preview(args: argparse.Namespace) -> int:
    quiet_warnings()
    from policysearch.data.datasets import load_part
    from policysearch.policy.definition import read_policy
    from policysearch.tracking.plots import epochs_grid, sample_grid

    policy = read_policy(args.policy)
    out = Path(args.out or f"previews/{Path(args.policy).stem}"
               f"{'-epochs' if args.epochs else ''}.png")
    check_output(out, "--out")
    dataset = args.dataset or policy.source.get("dataset") or "cifar10"
    part = load_part(dataset, "train", args.data_dir, args.image_size)
    import numpy as np

    picks = [int(np.flatnonzero(part.y == c)[0]) for c in np.unique(part.y)][: args.images]
    images = part.x[picks]
    tiles = len(picks) * (1 + (args.epochs or 3))
    if tiles * images[0].size * 9 > PREVIEW_BYTES:  # tiles are drawn 3 x 3 times larger
        raise PolicySearchError(f"preview: {tiles} tiles of {images.shape[2]}x{images.shape[1]} "
                                f"would make a grid over {PREVIEW_BYTES >> 20} MiB; pass "
                                "--image-size N (e.g. 64), or fewer --images or --epochs")
    padding = int(policy.base.get("crop_padding", 0)) if args.base else 0
    flip = bool(policy.base.get("flip", False)) if args.base else False
    if args.epochs:
        png = epochs_grid(policy, images, epochs=args.epochs, seed=args.seed,
                          crop_padding=padding, flip=flip)
    else:
        png = sample_grid(policy, images, seed=args.seed, crop_padding=padding, flip=flip)
    try:
        write_atomic(out, png)  # a full disk leaves no half a PNG
    except OSError as err:
        raise PolicySearchError(f"--out {out}: cannot write it ({err.strerror or err})") from None
    say(f"wrote {out}")
    return 0


def check_output(path: Path, flag: str) -> None:
    """Refuse, before any work, an output file that cannot be created: a folder, or a path
    under a file."""
    if path.is_dir():
        raise PolicySearchError(f"{flag} {path}: is a folder; give a file name")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise PolicySearchError(f"{flag} {path}: {parent} is a file, not a folder")
