"""Datasets: find, decode, cache and split image data.

A dataset is named (``cifar10``, ``mnist``: ``<name>-images.tar.gz`` or a ``<name>/`` folder in
the data directory) or a path to a folder or ``.tar.gz`` laid out as
``train/<class>/*.<image>`` and ``test/<class>/*.<image>``. Decoded arrays are cached as ``.npz``
files (zip CRCs detect a truncated or corrupt cache, which is then rebuilt). The training and
test parts are cached apart, and the search loads only the training part: the test split is
read by ``validate`` alone (``policysearch.data.splits`` carves the training part).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from policysearch.data.images import allocate, decode_image, fit_arrays
from policysearch.errors import DataError, PolicySearchWarning

ARCHIVE_SUFFIX = "-images.tar.gz"
"""A named dataset's archive in the data directory: ``<name>-images.tar.gz``."""
CIFAR10_ARCHIVE = f"cifar10{ARCHIVE_SUFFIX}"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
PARTS = ("train", "test")
DECODER_VERSION = 2
"""Part of every cache file's name: a cache decoded by an older decoder is not reused."""


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


def load_part(dataset: str, part: str, data_dir: str | os.PathLike[str] | None = None,
              image_size: int | None = None) -> Part:
    """Load ``part`` ("train" or "test") of ``dataset``, decoding once and caching arrays.

    With ``image_size`` every image is decoded to ``image_size`` x ``image_size`` (see
    ``RESIZE_METHOD``); without it, images keep their size, which must be one size for all.
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}. Received: part={part!r}")
    source = resolve(dataset, data_dir)
    if source is None:
        cifar = _cifar10_from_keras(part)
        return Part(fit_arrays(cifar.x, image_size), cifar.y, cifar.classes)
    key = _fingerprint(source)
    size = f"-s{image_size}" if image_size else ""
    name = f"{slug(dataset)}-{key[:16]}{size}-d{DECODER_VERSION}-{part}.npz"
    path = cache_dir() / name
    cached = _read_cache(path)
    if cached is not None:
        return cached
    decoded = _decode(source, part, image_size)
    _write_cache(path, decoded)
    return decoded


def load_test_part(dataset: str, classes: tuple[str, ...],
                   data_dir: str | os.PathLike[str] | None = None,
                   image_size: int | None = None) -> Part:
    """The test part with labels numbered as ``classes`` (the training part's), by class name.

    Classes are matched by folder name, never by position: a test folder named differently
    from the training folders is refused, naming the classes on each side.
    """
    test = load_part(dataset, "test", data_dir, image_size)
    if test.classes != tuple(classes):
        only_test = sorted(set(test.classes) - set(classes))
        only_train = sorted(set(classes) - set(test.classes))
        if only_test or only_train:
            raise DataError(
                f"dataset {dataset}: the class folders of test/ and train/ differ: only in "
                f"test/: {', '.join(only_test) or '-'}; only in train/: "
                f"{', '.join(only_train) or '-'} (test labels are matched by class name)")
        index = np.array([list(classes).index(c) for c in test.classes], dtype="int64")
        test = Part(test.x, index[test.y], tuple(classes))
    return test


def image_side(dataset: str, data_dir: str | os.PathLike[str] | None = None,
               image_size: int | None = None) -> int:
    """The shorter side, in pixels, of the images the trainer will see (read from one image's
    header; nothing is decoded)."""
    if image_size:
        return int(image_size)
    source = resolve(dataset, data_dir)
    if source is None:
        return 32
    from PIL import Image

    for _, name, data in _read_entries(source, "train", None):
        try:
            with Image.open(io.BytesIO(data)) as im:
                return min(im.size)
        except Exception:  # any unreadable image: decoding names it later
            raise DataError(f"dataset {source}: cannot read image {name}") from None
    raise DataError(f"dataset {source}: no images under train/<class>/")


# ----------------------------------------------------------------------------------------------
# Finding the source


def named_source(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The data directory's ``<name>-images.tar.gz`` (or ``<name>/`` folder with ``train/``)
    for a plain name such as ``mnist``; ``None`` if no data directory holds it."""
    if not name or os.sep in name or "/" in name or name.startswith(".") \
            or name.endswith((".tar.gz", ".tgz", ".tar")):
        return None
    for directory in data_dirs(data_dir):
        candidate = directory / f"{name}{ARCHIVE_SUFFIX}"
        if candidate.is_file():
            return candidate
        if (directory / name / "train").is_dir():
            return directory / name
    return None


def named_datasets(data_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """The names the data directories hold (``cifar10`` always: Keras can download it)."""
    names = {"cifar10"}
    for directory in data_dirs(data_dir):
        with contextlib.suppress(OSError):
            names.update(p.name.removesuffix(ARCHIVE_SUFFIX)
                         for p in directory.glob(f"*{ARCHIVE_SUFFIX}"))
    return sorted(names)


def resolve(dataset: str, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The folder or archive of ``dataset``; ``None`` means Keras' own CIFAR-10 download.

    A plain name is looked up in the data directories first (``named_source``); only CIFAR-10
    has a download fallback.
    """
    found = named_source(dataset, data_dir)
    if found is not None:
        return found
    if dataset == "cifar10":
        return None
    path = Path(dataset).expanduser()
    if not path.exists():
        hint = ""
        if os.sep not in dataset:
            where = ", ".join(str(d) for d in data_dirs(data_dir)) or "none given: pass " \
                "--data-dir DIR or set POLICYSEARCH_DATA_DIR"
            hint = (f" and no {dataset}{ARCHIVE_SUFFIX} in the data directory ({where}); "
                    f"named datasets: {', '.join(named_datasets(data_dir))}")
        raise DataError(f"dataset {dataset!r}: no such folder or archive{hint}")
    if path.is_dir():
        return path
    if path.name.endswith((".tar.gz", ".tgz", ".tar")):
        if not path.is_file():
            raise DataError(f"dataset {dataset!r}: is not a regular file")
        problem = _archive_problem(path)
        if problem:
            raise DataError(f"dataset {dataset!r}: {problem}")
        return path
    raise DataError(f"dataset {dataset!r}: expected a folder or a .tar.gz archive with "
                    "train/<class>/*.jpg and test/<class>/*.jpg")


def _archive_problem(path: Path) -> str | None:
    """What is wrong with an archive at a glance (its first bytes), or ``None``."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    layout = "; expected a .tar.gz of train/<class>/*.jpg and test/<class>/*.jpg"
    if not head:
        return "is an empty file (0 bytes), not a .tar.gz archive" + layout
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ")) or head[257:262] == b"ustar":
        return None  # gzip, bzip2, xz or plain tar: tarfile reads them
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return ("is a zip file, not a .tar.gz; unzip it and pass the folder, or repack it "
                "with `tar czf NAME.tar.gz train test`")
    return "is not a tar or .tar.gz archive (its first bytes are no archive header)" + layout


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

def _decode(source: Path, part: str, image_size: int | None = None) -> Part:
    entries = _list_entries(source, part)
    if not entries:
        raise DataError(f"dataset {source}: no images under {part}/<class>/ "
                        "(expected train/<class>/*.jpg and test/<class>/*.jpg)")
    classes = tuple(sorted({cls for cls, _ in entries}))
    if part == "train" and len(classes) < 2:
        raise DataError(f"dataset {source}: train/ has one class ({classes[0]}); a classifier "
                        "needs at least two class folders")
    position = {name: i for i, (_, name) in enumerate(entries)}
    labels = np.asarray([classes.index(cls) for cls, _ in entries], dtype="int64")
    x: np.ndarray | None = None
    first = ""
    for _, name, data in _read_entries(source, part, entries):
        array = decode_image(data, f"dataset {source}: image {name}", image_size)
        if x is None:
            first = name
            x = allocate(f"dataset {source}: {len(entries)} {part} images", len(entries),
                         array.shape)
        elif array.shape != x.shape[1:]:
            raise DataError(
                f"dataset {source}: image {name} is {array.shape[1]}x{array.shape[0]}, others "
                f"(such as {first}) are {x.shape[2]}x{x.shape[1]}; pass --image-size N "
                "(data.image_size) to decode every image to N x N")
        x[position[name]] = array
    assert x is not None
    return Part(x, labels, classes)


def _list_entries(source: Path, part: str) -> list[tuple[str, str]]:
    """(class, member name) of every image in ``part``, sorted for a stable order."""
    found = []
    if source.is_dir():
        root = source / part
        if root.is_dir():
            for path in root.glob("*/*"):
                if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                    found.append((path.parent.name, str(path.relative_to(source))))
            empty = sorted(d.name for d in root.iterdir() if d.is_dir() and d.name[:1] != "."
                           and d.name not in {cls for cls, _ in found})
            if empty:
                raise DataError(f"dataset {source}: class folder {part}/{empty[0]} has no images "
                                f"({', '.join(sorted(IMAGE_SUFFIXES))}); add images or remove it "
                                "(a class with no images cannot be learned or scored)")
    else:
        with _open_archive(source) as archive:
            for member in _archive_members(source, archive):
                entry = _archive_entry(member, part)
                if entry:
                    found.append(entry)
    return sorted(found)


def _archive_entry(member: tarfile.TarInfo, part: str) -> tuple[str, str] | None:
    parts = Path(member.name).parts
    if parts and parts[0] == ".":
        parts = parts[1:]
    if (member.isfile() and len(parts) == 3 and parts[0] == part
            and Path(parts[2]).suffix.lower() in IMAGE_SUFFIXES):
        return parts[1], member.name
    return None


def _open_archive(source: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(source)
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"dataset {source}: cannot read the archive ({err}); it is truncated "
                        "or corrupt") from None


def _archive_members(source: Path, archive: tarfile.TarFile):
    try:
        yield from archive
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise DataError(f"dataset {source}: cannot read the archive ({err}); it is truncated "
                        "or corrupt") from None


def _read_entries(source: Path, part: str, entries: list[tuple[str, str]] | None):
    """(class, name, bytes) of ``entries`` (``None``: every image of ``part``), one at a time
    (an archive is streamed in its own order)."""
    if source.is_dir():
        for cls, name in entries if entries is not None else _list_entries(source, part):
            try:
                data = (source / name).read_bytes()
            except OSError as err:
                raise DataError(f"dataset {source}: cannot read {name} ({err.strerror})") \
                    from None
            yield cls, name, data
        return
    wanted = None if entries is None else {name: cls for cls, name in entries}
    with _open_archive(source) as archive:
        for member in _archive_members(source, archive):
            entry = _archive_entry(member, part)
            if entry is None or (wanted is not None and member.name not in wanted):
                continue
            try:
                handle = archive.extractfile(member)
                data = handle.read() if handle else b""
            except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
                raise DataError(f"dataset {source}: cannot read the archive ({err}); it is "
                                "truncated or corrupt") from None
            yield entry[0], member.name, data


# ----------------------------------------------------------------------------------------------
# Cache


def _read_cache(path: Path) -> Part | None:
    """The cached part, or ``None`` if missing, truncated or corrupt (then it is rebuilt)."""
    try:
        if not path.is_file():
            return None
    except OSError:
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
                      PolicySearchWarning, stacklevel=2)
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        return None


def _write_cache(path: Path, part: Part) -> None:
    """Cache ``part``; a cache directory that cannot be written (read-only, full, not a
    directory) only warns: the data is used without caching."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:
            np.savez(handle, x=part.x, y=part.y, classes=np.array(json.dumps(list(part.classes))))
        os.replace(tmp, path)
    except OSError as err:
        import warnings

        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        warnings.warn(f"cannot cache the decoded dataset in {path.parent} "
                      f"({err.strerror or err}); continuing without a cache (set "
                      "POLICYSEARCH_CACHE_DIR to a writable folder)", PolicySearchWarning,
                      stacklevel=2)
