"""Datasets: folders and archives, the decoded cache, errors that name the culprit."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import png_header, tar_folder, write_image_folder

from policysearch.data.datasets import (
    CIFAR10_CLASSES,
    cache_dir,
    load_part,
)
from policysearch.errors import DataError


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache of this test's own (the session cache is shared with other tests)."""
    path = tmp_path / "cache"
    monkeypatch.setenv("POLICYSEARCH_CACHE_DIR", str(path))
    assert cache_dir() == path
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "shapes", classes=3, per_class=6, size=16,
                              test_per_class=2)


def cache_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.npz")) if cache.exists() else []


def check_small_dataset(dataset: str) -> None:
    train = load_part(dataset, "train")
    assert train.x.shape == (18, 16, 16, 3) and train.x.dtype == np.uint8
    assert train.y.shape == (18,) and train.y.dtype == np.int64
    assert train.classes == ("class0", "class1", "class2")
    assert np.bincount(train.y).tolist() == [6, 6, 6]
    # write_image_folder colours class c at 40 + 80 c (noise +-20): labels follow the folders
    for c in range(3):
        assert abs(train.x[train.y == c].mean() - (40 + 80 * c)) < 5
    test = load_part(dataset, "test")
    assert test.x.shape == (6, 16, 16, 3)
    assert np.bincount(test.y).tolist() == [2, 2, 2]
    assert test.classes == train.classes


def test_folder_and_archive_load_the_same(folder: Path, tmp_path: Path, cache: Path) -> None:
    check_small_dataset(str(folder))
    archive = tar_folder(folder, tmp_path / "shapes.tar.gz")
    check_small_dataset(str(archive))
    a, b = load_part(str(folder), "train"), load_part(str(archive), "train")
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    names = [p.name for p in cache_files(cache)]
    assert len(names) == 4, "two parts of two sources, cached apart"
    assert sum(n.startswith("shapes-") and n.endswith("-test.npz") for n in names) == 2


def test_class_names_are_sorted(tmp_path: Path, cache: Path) -> None:
    root = tmp_path / "animals"
    write_image_folder(root, classes=3, per_class=2, size=8, test_per_class=1)
    for part in ("train", "test"):
        for old, new in (("class0", "zebra"), ("class1", "ant"), ("class2", "moose")):
            (root / part / old).rename(root / part / new)
    part = load_part(str(root), "train")
    assert part.classes == ("ant", "moose", "zebra")
    # ant was class1 (colour 120), zebra was class0 (colour 40)
    assert abs(part.x[part.y == 0].mean() - 120) < 5
    assert abs(part.x[part.y == 2].mean() - 40) < 5


def test_cache_is_reused(folder: Path, cache: Path) -> None:
    first = load_part(str(folder), "train")
    [cached] = cache_files(cache)
    stamp = cached.stat().st_mtime_ns
    # Spoil an image but keep its size and mtime: the source's fingerprint is unchanged, so a
    # second load that decoded again would fail; one from the cache does not.
    image = folder / "train" / "class1" / "002.png"
    info = image.stat()
    image.write_bytes(b"\0" * info.st_size)
    os.utime(image, ns=(info.st_atime_ns, info.st_mtime_ns))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = load_part(str(folder), "train")
    assert np.array_equal(first.x, second.x) and np.array_equal(first.y, second.y)
    assert second.classes == first.classes
    assert cached.stat().st_mtime_ns == stamp, "the cache was not rewritten"
    assert [p.name for p in cache.iterdir()] == [cached.name], "no temporary files left"


def test_changed_source_is_decoded_again(folder: Path, cache: Path) -> None:
    from PIL import Image

    assert len(load_part(str(folder), "train").x) == 18
    (folder / "train" / "extra").mkdir()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(folder / "train" / "extra" / "0.png")
    part = load_part(str(folder), "train")
    assert part.classes[-1] == "extra" and len(part.x) == 19
    assert len(cache_files(cache)) == 2


@pytest.mark.parametrize("damage", ["truncate", "flip_bytes", "garbage"])
def test_corrupt_cache_is_detected_and_rebuilt(folder: Path, cache: Path, damage: str) -> None:
    good = load_part(str(folder), "train")
    [cached] = cache_files(cache)
    data = bytearray(cached.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip_bytes":
        # inside the image array, past the .npy header: only the zip CRC can tell
        for i in range(200, 260):
            data[i] ^= 0xFF
    else:
        data = bytearray(b"not a zip file at all")
    cached.write_bytes(bytes(data))

    with pytest.warns(UserWarning, match="truncated or corrupt; rebuilding"):
        rebuilt = load_part(str(folder), "train")
    assert np.array_equal(rebuilt.x, good.x) and np.array_equal(rebuilt.y, good.y)
    assert rebuilt.classes == good.classes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = load_part(str(folder), "train")  # the rebuilt cache is sound
    assert np.array_equal(again.x, good.x)


def test_corrupt_image_names_the_file(folder: Path, tmp_path: Path, cache: Path) -> None:
    bad = folder / "train" / "class2" / "004.png"
    bad.write_bytes(bad.read_bytes()[:40])  # a truncated PNG
    with pytest.raises(DataError) as err:
        load_part(str(folder), "train")
    assert "train/class2/004.png" in str(err.value) and "corrupt" in str(err.value)

    archive = tar_folder(folder, tmp_path / "bad.tar.gz")
    with pytest.raises(DataError, match="train/class2/004.png"):
        load_part(str(archive), "train")
    assert load_part(str(folder), "test").x.shape[0] == 6, "the test part is not affected"
    assert not any(p.name.endswith("-train.npz") for p in cache_files(cache))


def test_mixed_image_sizes_are_refused(folder: Path, cache: Path) -> None:
    from PIL import Image

    Image.new("RGB", (20, 12), (9, 9, 9)).save(folder / "train" / "class1" / "big.png")
    with pytest.raises(DataError) as err:
        load_part(str(folder), "train")
    message = str(err.value)
    assert "train/class1/big.png" in message and "20x12" in message and "16x16" in message


def test_missing_dataset_names_the_path(tmp_path: Path, cache: Path) -> None:
    missing = tmp_path / "nowhere" / "dataset"
    with pytest.raises(DataError) as err:
        load_part(str(missing), "train")
    assert str(missing) in str(err.value)
    with pytest.raises(DataError, match="no such folder"):
        load_part(str(missing), "test")


def test_empty_or_malformed_sources_are_refused(tmp_path: Path, cache: Path) -> None:
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="no images under train"):
        load_part(str(tmp_path / "empty"), "train")
    bad = tmp_path / "cut.tar.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(DataError, match="truncated"):
        load_part(str(bad), "train")
    text = tmp_path / "notes.txt"
    text.write_text("x")
    with pytest.raises(DataError, match="expected a folder or a .tar.gz"):
        load_part(str(text), "train")


def test_a_name_finds_its_archive_in_the_data_directory(folder: Path, tmp_path: Path,
                                                       cache: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # `--dataset shapes` finds shapes-images.tar.gz as `cifar10` finds its archive
    data = tmp_path / "data"
    data.mkdir()
    tar_folder(folder, data / "shapes-images.tar.gz")
    monkeypatch.delenv("POLICYSEARCH_DATA_DIR", raising=False)
    assert np.array_equal(load_part("shapes", "train", data).y, load_part(str(folder), "train").y)
    monkeypatch.setenv("POLICYSEARCH_DATA_DIR", str(data))
    assert load_part("shapes", "test").x.shape == (6, 16, 16, 3)
    with pytest.raises(DataError) as err:
        load_part("digits", "train")
    message = str(err.value)
    assert "no digits-images.tar.gz in the data directory" in message
    assert "named datasets: cifar10, shapes" in message


def test_mnist_archive(mnist_dir: Path) -> None:
    test = load_part("mnist", "test", mnist_dir)
    assert test.x.shape == (2000, 28, 28, 3) and test.classes == tuple("0123456789")
    train = load_part("mnist", "train", mnist_dir)
    assert train.x.shape == (8000, 28, 28, 3) and train.classes == test.classes
    assert 20 < train.x.mean() < 60, "white strokes on black, not blank images"


# ----------------------------------------------------------------------------------------------
# The real CIFAR-10 archive: decodes 60,000 JPEGs once; the session cache serves the rest


def test_cifar10_archive(data_dir: Path) -> None:
    test = load_part("cifar10", "test", data_dir)
    assert test.x.shape == (10000, 32, 32, 3) and test.x.dtype == np.uint8
    assert np.bincount(test.y).tolist() == [1000] * 10
    train = load_part("cifar10", "train", data_dir)
    assert train.x.shape == (50000, 32, 32, 3)
    assert np.bincount(train.y).tolist() == [5000] * 10
    assert train.classes == test.classes == CIFAR10_CLASSES == (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    assert 100 < train.x.mean() < 150, "real photographs, not blank images"

    cached = sorted(p.name for p in cache_dir().glob("cifar10-*.npz"))
    assert len(cached) == 2 and cached[0].endswith("-test.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = load_part("cifar10", "train", data_dir)  # from the cache
    assert np.array_equal(again.y, train.y) and np.array_equal(again.x[::997], train.x[::997])
# ----------------------------------------------------------------------------------------------
# A user's own images (issue 16)


def test_test_labels_are_matched_by_class_name(folder: Path, cache: Path) -> None:
    from policysearch.data.datasets import load_test_part

    train = load_part(str(folder), "train")
    test = load_test_part(str(folder), train.classes)
    assert test.classes == train.classes
    for c in range(3):  # labels follow the class colour, as in the training part
        assert abs(test.x[test.y == c].mean() - (40 + 80 * c)) < 5
    (folder / "test" / "class1").rename(folder / "test" / "klass1")
    with pytest.raises(DataError) as err:
        load_test_part(str(folder), train.classes)
    message = str(err.value)
    assert "only in test/: klass1" in message and "only in train/: class1" in message


def test_16_bit_greyscale_pngs_are_scaled_to_8_bits(folder: Path, cache: Path) -> None:
    from PIL import Image

    ramp = np.tile(np.linspace(0, 65535, 16).astype("uint16"), (16, 1))
    for path in (folder / "train").glob("*/*.png"):
        Image.fromarray(ramp).save(path)  # mode I;16: a 16-bit greyscale PNG
    with Image.open(next((folder / "train").glob("*/*.png"))) as im:
        assert im.mode.startswith("I"), im.mode
    x = load_part(str(folder), "train").x
    expected = np.round(ramp / 257).astype("uint8")
    assert np.abs(x[0, :, :, 0].astype(int) - expected).max() <= 1, "not all 255"
    assert x[0].min() == 0 and x[0].max() == 255 and len(np.unique(x[0])) == 16


def test_one_class_is_refused(tmp_path: Path, cache: Path) -> None:
    folder = write_image_folder(tmp_path / "one", classes=1)
    with pytest.raises(DataError, match="one class .class0.; a classifier needs at least two"):
        load_part(str(folder), "train")


def test_image_size_resizes_mixed_sizes_at_decode(folder: Path, cache: Path) -> None:
    from PIL import Image, ImageOps

    wide = np.random.default_rng(0).integers(0, 256, (12, 30, 3)).astype("uint8")
    Image.fromarray(wide).save(folder / "train" / "class1" / "wide.png")
    with pytest.raises(DataError) as err:
        load_part(str(folder), "train")
    assert "--image-size" in str(err.value) and "wide.png" in str(err.value)
    part = load_part(str(folder), "train", image_size=8)
    assert part.x.shape == (19, 8, 8, 3)
    names = sorted(str(p.relative_to(folder)) for p in (folder / "train").glob("*/*.png"))
    expected = ImageOps.fit(Image.fromarray(wide), (8, 8), method=Image.Resampling.BICUBIC)
    assert np.array_equal(part.x[names.index("train/class1/wide.png")], np.asarray(expected))
    assert len([p for p in cache_files(cache) if "-s8-" in p.name]) == 1, "cached per size"
    assert load_part(str(folder), "test", image_size=8).x.shape == (6, 8, 8, 3)


def test_large_photos_need_an_image_size(tmp_path: Path, cache: Path) -> None:
    from PIL import Image

    folder = write_image_folder(tmp_path / "photos", classes=2, per_class=2, test_per_class=1)
    photo = np.zeros((900, 1200, 3), "uint8")
    photo[:, 600:] = 200
    for path in folder.glob("*/*/*.png"):
        path.unlink()
        Image.fromarray(photo).save(path.with_suffix(".jpg"), quality=90)
    with pytest.raises(DataError) as err:
        load_part(str(folder), "train")
    assert "1200x900" in str(err.value) and "--image-size" in str(err.value)
    part = load_part(str(folder), "train", image_size=32)
    assert part.x.shape == (4, 32, 32, 3)
    assert part.x[0, :, :6].mean() < 20 and part.x[0, :, -6:].mean() > 180, "centre crop"


def test_decoded_size_is_bounded_before_decoding(folder: Path, cache: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLICYSEARCH_MAX_DATA_BYTES", str(17 * 16 * 16 * 3))
    with pytest.raises(DataError, match="18 train images of 16x16 need .* over the"):
        load_part(str(folder), "train")
    assert load_part(str(folder), "train", image_size=8).x.shape == (18, 8, 8, 3)


def test_decompression_bomb_is_one_line(folder: Path, tmp_path: Path, cache: Path) -> None:
    (folder / "train" / "class0" / "bomb.png").write_bytes(png_header(20000, 12000))
    for image_size in (None, 64):
        with pytest.raises(DataError) as err:
            load_part(str(folder), "train", image_size=image_size)
        assert "bomb.png" in str(err.value) and "too many pixels" in str(err.value)


@pytest.mark.parametrize("content, needle", [
    (b"", "is an empty file"),
    (os.urandom(2048), "is not a tar or .tar.gz archive"),
    (b"PK\x03\x04" + b"\x00" * 100, "is a zip file"),
])
def test_non_archives_are_named_for_what_they_are(tmp_path: Path, cache: Path, content: bytes,
                                                  needle: str) -> None:
    path = tmp_path / "data.tar.gz"
    path.write_bytes(content if not content.startswith(b"\x1f\x8b") else b"x" + content)
    with pytest.raises(DataError) as err:
        load_part(str(path), "train")
    assert needle in str(err.value) and "truncated" not in str(err.value)


def test_truncated_archive_says_so(folder: Path, tmp_path: Path, cache: Path) -> None:
    archive = tar_folder(folder, tmp_path / "data.tar.gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_part(str(archive), "train")


def test_unwritable_cache_warns_and_loads(folder: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("POLICYSEARCH_CACHE_DIR", str(blocker / "cache"))
    with pytest.warns(UserWarning, match="continuing without a cache"):
        part = load_part(str(folder), "train")
    assert part.x.shape == (18, 16, 16, 3)


def test_full_disk_leaves_no_temporary_cache_file(folder: Path, tmp_path: Path) -> None:
    """A real process whose files may not exceed 4 KB (the kernel's EFBIG, as a full disk)."""
    import subprocess
    import sys

    cache = tmp_path / "cache"
    code = ("import resource, warnings; resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096));"
            "from policysearch.data.datasets import load_part;"
            "warnings.simplefilter('always');"
            f"print(load_part({str(folder)!r}, 'train').x.shape)")
    env = {**os.environ, "POLICYSEARCH_CACHE_DIR": str(cache)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "(18, 16, 16, 3)" in result.stdout
    assert "continuing without a cache" in result.stderr and "Traceback" not in result.stderr
    assert list(cache.iterdir()) == [], "no .npz.tmp (and no half cache) is left behind"


def test_image_side_reads_one_header(folder: Path, tmp_path: Path, cache: Path) -> None:
    from policysearch.data.datasets import image_side

    assert image_side(str(folder)) == 16
    assert image_side(str(tar_folder(folder, tmp_path / "d.tar.gz"))) == 16
    assert image_side(str(folder), image_size=40) == 40
    assert image_side("cifar10") == 32
    assert cache_files(cache) == [], "nothing decoded"
