"""Datasets: find, decode, cache and split image data.

A dataset is named (``cifar10``) or a path to a folder or ``.tar.gz`` laid out as
``train/<class>/*.<image>`` and ``test/<class>/*.<image>``. Decoded arrays are cached as ``.npz``
files (zip CRCs detect a truncated or corrupt cache, which is then rebuilt). The training and
test parts are cached apart, and the search loads only the training part: the test split is
read by ``validate`` alone (``policysearch.splits`` carves the training part).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from policysearch.errors import DataError

CIFAR10_ARCHIVE = "cifar10-images.tar.gz"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
PARTS = ("train", "test")


@dataclass
class Part:
    """One part of a dataset: images ``(N, H, W, C)`` uint8 and labels ``(N,)`` int64."""

    x: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]


def data_dirs(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Where named datasets are looked for: ``data_dir``, then ``$POLICYSEARCH_DATA_DIR``."""
    dirs = [Path(d) for d in (data_dir, os.environ.get("POLICYSEARCH_DATA_DIR")) if d]
    return dirs


def cache_dir() -> Path:
    """``$POLICYSEARCH_CACHE_DIR``, else ``~/.cache/policysearch``."""
    root = os.environ.get("POLICYSEARCH_CACHE_DIR") or Path.home() / ".cache" / "policysearch"
    return Path(root)


def load_part(dataset: str, part: str, data_dir: str | os.PathLike[str] | None = None) -> Part:
    """Load ``part`` ("train" or "test") of ``dataset``, decoding once and caching arrays."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}. Received: part={part!r}")
    source = resolve(dataset, data_dir)
    if source is None:
        return _cifar10_from_keras(part)
    key = _fingerprint(source)
    name = f"{slug(dataset)}-{key[:16]}-{part}.npz"
    path = cache_dir() / name
    cached = _read_cache(path)
    if cached is not None:
        return cached
    decoded = _decode(source, part)
    _write_cache(path, decoded)
    return decoded


# ----------------------------------------------------------------------------------------------
# Finding the source


def resolve(dataset: str, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The folder or archive of ``dataset``; ``None`` means Keras' own CIFAR-10 download."""
    if dataset == "cifar10":
        for directory in data_dirs(data_dir):
            candidate = directory / CIFAR10_ARCHIVE
            if candidate.is_file():
                return candidate
            if (directory / "cifar10" / "train").is_dir():
                return directory / "cifar10"
        return None
    path = Path(dataset).expanduser()
    if not path.exists():
        hint = " (named datasets: cifar10)" if os.sep not in dataset else ""
        raise DataError(f"dataset {dataset!r}: no such folder or archive{hint}")
    if path.is_dir() or path.name.endswith((".tar.gz", ".tgz", ".tar")):
        return path
    raise DataError(f"dataset {dataset!r}: expected a folder or a .tar.gz archive with "
                    "train/<class>/*.jpg and test/<class>/*.jpg")


def _cifar10_from_keras(part: str) -> Part:
    where = ", ".join(str(d) for d in data_dirs()) or "no directory given"
    try:
        import keras

        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as err:  # offline: urllib, ssl and socket errors all end here
        raise DataError(
            f"CIFAR-10 not found: no {CIFAR10_ARCHIVE} in the data directory ({where}) and "
            f"Keras' download failed ({type(err).__name__}). Put {CIFAR10_ARCHIVE} in a "
            "directory and pass --data-dir DIR or set POLICYSEARCH_DATA_DIR"
        ) from None
    x, y = (x_train, y_train) if part == "train" else (x_test, y_test)
    return Part(np.ascontiguousarray(x), y.reshape(-1).astype("int64"), CIFAR10_CLASSES)


def _fingerprint(source: Path) -> str:
    """Changes when the source changes: path, size and mtime of the archive or of every file."""
    h = hashlib.sha256(str(source.resolve()).encode())
    if source.is_file():
        stat = source.stat()
        h.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    else:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                stat = path.stat()
                h.update(f"{path.relative_to(source)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return h.hexdigest()


def slug(dataset: str) -> str:
    name = Path(dataset).name or "dataset"
    for suffix in (".tar.gz", ".tgz", ".tar"):
        name = name.removesuffix(suffix)
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


# ----------------------------------------------------------------------------------------------
# Decoding


def _decode(source: Path, part: str) -> Part:
    entries = _list_entries(source, part)
    if not entries:
        raise DataError(f"dataset {source}: no images under {part}/<class>/ "
                        "(expected train/<class>/*.jpg and test/<class>/*.jpg)")
    classes = tuple(sorted({cls for cls, _ in entries}))
    from PIL import Image, UnidentifiedImageError

    images, labels = [], []
    shape = None
    for cls, name, data in _read_entries(source, part, entries):
        try:
            with Image.open(io.BytesIO(data)) as im:
                array = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise DataError(f"dataset {source}: cannot decode image {name} "
                            f"({err.__class__.__name__}); is it corrupt?") from None
        if shape is None:
            shape = array.shape
        elif array.shape != shape:
            raise DataError(f"dataset {source}: image {name} is {array.shape[1]}x{array.shape[0]}, "
                            f"others are {shape[1]}x{shape[0]}; resize the images to one size")
        images.append(array)
        labels.append(classes.index(cls))
    return Part(np.stack(images), np.asarray(labels, dtype="int64"), classes)


def _list_entries(source: Path, part: str) -> list[tuple[str, str]]:
    """(class, member name) of every image in ``part``, sorted for a stable order."""
    found = []
    if source.is_dir():
        root = source / part
        if root.is_dir():
            for path in root.glob("*/*"):
                if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                    found.append((path.parent.name, str(path.relative_to(source))))
    else:
        try:
            with tarfile.open(source) as archive:
                for member in archive:
                    parts = Path(member.name).parts
                    if parts and parts[0] == ".":
                        parts = parts[1:]
                    if (member.isfile() and len(parts) == 3 and parts[0] == part
                            and Path(parts[2]).suffix.lower() in IMAGE_SUFFIXES):
                        found.append((parts[1], member.name))
        except (tarfile.TarError, OSError, EOFError) as err:
            raise DataError(f"dataset {source}: cannot read the archive ({err}); "
                            "is it truncated?") from None
    return sorted(found)


def _read_entries(source: Path, part: str, entries: list[tuple[str, str]]):
    if source.is_dir():
        for cls, name in entries:
            yield cls, name, (source / name).read_bytes()
        return
    wanted = {name: cls for cls, name in entries}
    blobs: dict[str, bytes] = {}
    try:
        with tarfile.open(source) as archive:
            for member in archive:
                if member.name in wanted:
                    handle = archive.extractfile(member)
                    blobs[member.name] = handle.read() if handle else b""
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"dataset {source}: cannot read the archive ({err}); "
                        "is it truncated?") from None
    for cls, name in entries:
        yield cls, name, blobs[name]


# ----------------------------------------------------------------------------------------------
# Cache


def _read_cache(path: Path) -> Part | None:
    """The cached part, or ``None`` if missing, truncated or corrupt (then it is rebuilt)."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            x, y = data["x"], data["y"]
            classes = tuple(json.loads(str(data["classes"])))
        if x.dtype != np.uint8 or x.ndim != 4 or len(x) != len(y):
            raise ValueError("unexpected arrays")
        return Part(x, y, classes)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError):
        import warnings

        warnings.warn(f"cached dataset {path} is truncated or corrupt; rebuilding it",
                      stacklevel=2)
        path.unlink(missing_ok=True)
        return None


def _write_cache(path: Path, part: Part) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        np.savez(handle, x=part.x, y=part.y, classes=np.array(json.dumps(list(part.classes))))
    os.replace(tmp, path)


def describe(dataset: str, data_dir: Any = None) -> str:
    """Where ``dataset`` comes from, in words."""
    source = resolve(dataset, data_dir)
    return "Keras' CIFAR-10 download" if source is None else str(source)
