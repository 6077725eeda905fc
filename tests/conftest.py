"""Shared fixtures: real CIFAR-10 images, small generated datasets, services.

Real data comes from ``POLICYSEARCH_DATA_DIR`` (CI points it at the shared archive). With
``POLICYSEARCH_REQUIRE_SERVICES=1`` (CI), a missing archive or PostgreSQL fails the tests
instead of skipping them.
"""

from __future__ import annotations

import io
import os
import socket
import tarfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
REQUIRE = os.environ.get("POLICYSEARCH_REQUIRE_SERVICES") == "1"


def _unavailable(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"{reason} (POLICYSEARCH_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "backends: runs under every Keras backend (TF and JAX)")


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Decoded datasets are cached per test session (never in the user's cache)."""
    if "POLICYSEARCH_TEST_CACHE" in os.environ:
        os.environ["POLICYSEARCH_CACHE_DIR"] = os.environ["POLICYSEARCH_TEST_CACHE"]
    elif "PYTEST_XDIST_WORKER" in os.environ:
        # one cache for every worker of this run (a cache file is written atomically)
        shared = tmp_path_factory.getbasetemp().parent / "cache"
        shared.mkdir(exist_ok=True)
        os.environ["POLICYSEARCH_CACHE_DIR"] = str(shared)
    else:
        os.environ["POLICYSEARCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder holding cifar10-images.tar.gz."""
    for candidate in (os.environ.get("POLICYSEARCH_DATA_DIR"), ROOT.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "cifar10-images.tar.gz").is_file():
            return Path(candidate)
    _unavailable("cifar10-images.tar.gz not found; set POLICYSEARCH_DATA_DIR")
    raise AssertionError  # unreachable


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder holding mnist-images.tar.gz (10,000 real MNIST digits)."""
    for candidate in (os.environ.get("POLICYSEARCH_DATA_DIR"), ROOT.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "mnist-images.tar.gz").is_file():
            return Path(candidate)
    _unavailable("mnist-images.tar.gz not found; set POLICYSEARCH_DATA_DIR")
    raise AssertionError  # unreachable


@pytest.fixture(scope="session")
def cifar_images(data_dir: Path) -> np.ndarray:
    """64 real CIFAR-10 training images (the first members of the archive), uint8."""
    from PIL import Image

    images = []
    with tarfile.open(data_dir / "cifar10-images.tar.gz") as archive:
        for member in archive:
            if member.isfile() and member.name.startswith("train/"):
                data = archive.extractfile(member).read()
                images.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
                if len(images) == 64:
                    break
    return np.stack(images)


@pytest.fixture(scope="session")
def generated_images() -> np.ndarray:
    """Synthetic images that reach the value extremes: gradients, flat patches, noise."""
    rng = np.random.default_rng(0)
    h = w = 32
    ramp = np.linspace(0, 255, w, dtype="float32")
    images = [
        np.broadcast_to(ramp[None, :, None], (h, w, 3)),
        np.broadcast_to(ramp[:, None, None], (h, w, 3)),
        np.full((h, w, 3), 128.0),
        np.full((h, w, 3), 255.0),
        np.zeros((h, w, 3)),
        rng.integers(0, 256, (h, w, 3)),
        rng.integers(100, 140, (h, w, 3)),
        np.concatenate([np.zeros((h, w // 2, 3)), np.full((h, w // 2, 3), 255.0)], axis=1),
    ]
    return np.stack([np.asarray(i) for i in images]).astype("uint8")


def write_image_folder(root: Path, classes: int = 3, per_class: int = 6, size: int = 16,
                       test_per_class: int = 2, fmt: str = "PNG") -> Path:
    """A tiny dataset in the train/<class>/*, test/<class>/* layout (class = colour)."""
    from PIL import Image

    rng = np.random.default_rng(1)
    for part, count in (("train", per_class), ("test", test_per_class)):
        for c in range(classes):
            folder = root / part / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = np.full((size, size, 3), 40 + 80 * c, dtype="uint8")
                pixels = np.clip(pixels + rng.integers(-20, 20, pixels.shape), 0, 255)
                suffix = "png" if fmt == "PNG" else "jpg"
                Image.fromarray(pixels.astype("uint8")).save(folder / f"{i:03d}.{suffix}", fmt)
    return root


def tar_folder(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        for part in ("train", "test"):
            if (folder / part).exists():
                tar.add(folder / part, arcname=part)
    return archive


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A reachable PostgreSQL (``POLICYSEARCH_TEST_POSTGRES``) holding Optuna's tables."""
    url = os.environ.get("POLICYSEARCH_TEST_POSTGRES",
                         "postgresql://root@127.0.0.1:5432/test")
    import optuna
    import psycopg

    from policysearch.study.storage import normalize_url

    try:
        connection = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"),
                                     connect_timeout=5, autocommit=True)
    except Exception as err:  # not reachable here
        _unavailable(f"PostgreSQL at {url} unreachable: {err}")
    with connection:
        # Optuna's tables are created once, under a lock: test workers (pytest -n) start
        # together on a fresh database, and concurrent CREATE TABLEs collide
        connection.execute("SELECT pg_advisory_lock(727001)")
        try:
            optuna.storages.RDBStorage(normalize_url(url))
        finally:
            connection.execute("SELECT pg_advisory_unlock(727001)")
    return url


TINY_EXPERIMENT: dict = {
    "name": "tiny",
    "data": {"train_size": 36, "val_size": 18, "selection_size": 18, "split_seed": 0},
    "base_augment": {"crop_padding": 2, "flip": True},
    "trainer": {"epochs": 2, "batch_size": 16, "lr": 0.05, "warmup_epochs": 0,
                "model": {"widths": [8, 16], "depth": 1}},
    "search": {"space": "randaugment_subset", "trials": 2, "sampler": "tpe",
               "baselines": ["crop_flip", "randaugment_n2_m9", "trivialaugment"],
               "pruner": "hyperband", "seed": 0},
    "target": {"train_size": 36, "trainer": {"epochs": 2}},
    "race": {"top_k": 1, "min_seeds": 2, "max_seeds": 2},
    "validate": {"seeds": 2},
}
"""An experiment that trains in seconds on a ``write_image_folder`` dataset (16x16, 3 classes)."""


def tiny_experiment(path: Path, dataset: Path, **sections: dict) -> Path:
    """Write ``TINY_EXPERIMENT`` for ``dataset`` to ``path``; ``sections`` update its sections."""
    import yaml

    config = {**TINY_EXPERIMENT, "dataset": str(dataset)}
    for key, values in sections.items():
        config[key] = {**config.get(key, {}), **values}
    path.write_text(yaml.safe_dump(config))
    return path


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels (header only: nothing to decode)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")
