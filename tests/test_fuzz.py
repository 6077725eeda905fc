"""Malformed input at every entry point, through the real command line.

Each case is a ``policysearch`` command with one bad input: a dataset, an experiment file, a
search space, a policy file, a storage or tracking URI, a numeric flag. Every case must end with
a non-zero exit and exactly one line on stderr that names the problem (no traceback), and the
next normal command must still work. The search-path cases fail before any training.

To keep start-up cost low, the cases run in one child process (``policysearch.cli.main.main`` per
case, stderr captured per case); a normal command runs after each case in that process, and
normal commands run in fresh processes after the batch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TINY_EXPERIMENT, png_header, tar_folder, write_image_folder

from policysearch import randaugment, write_policy

DRIVER = r"""
import contextlib, io, json, os, sys, traceback
from policysearch.cli.main import main

def call(argv, env=None):
    err, out = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    os.environ.update(env or {})
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = "raised"
    os.environ.clear()
    os.environ.update(saved)
    return code, err.getvalue(), out.getvalue()

cases, good, results = json.load(open(sys.argv[1])), sys.argv[2], {}
# The MLflow store exists, as after a first run (creating it logs MLflow's own INFO lines).
import mlflow
mlflow.MlflowClient(sys.argv[4]).search_experiments()
for case in cases:
    code, err, out = call(case["argv"], case.get("env"))
    after, after_err, _ = call(["show", good])
    results[case["id"]] = {"code": code, "stderr": err, "stdout": out, "after": after,
                           "after_stderr": after_err}
json.dump(results, open(sys.argv[3], "w"))
"""


def build_cases(root: Path) -> tuple[list[dict[str, Any]], Path, Path]:
    """The malformed inputs (files written under ``root``) and the commands that read them."""
    from PIL import Image

    good_data = write_image_folder(root / "good")
    good_policy = write_policy(randaugment(2, 9), root / "good.json")
    regular = root / "regular-file"
    regular.write_text("x")
    search = ["search", "--storage", f"sqlite:///{root}/optuna.db", "--tracking-uri",
              f"sqlite:///{root}/mlflow.db", "--export", str(root / "out.json")]
    tiny = ["--train-size", "6", "--val-size", "6", "--selection-size", "3", "--epochs", "1",
            "--trials", "0"]
    cases: list[dict[str, Any]] = []

    def case(name: str, argv: list[str], needle: str, env: dict[str, str] | None = None) -> None:
        cases.append({"id": name, "argv": argv, "needle": needle, "env": env or {}})

    def folder(name: str, **kwargs: Any) -> Path:
        return write_image_folder(root / name, **kwargs)

    def write(name: str, content: str | bytes) -> Path:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    # -- datasets -----------------------------------------------------------------------------
    def dataset(name: str, path: Path | str, needle: str) -> None:
        case(f"dataset-{name}", [*search, "--dataset", str(path)], needle)

    dataset("missing", root / "nowhere", "no such folder")
    dataset("empty-tar-gz", write("empty.tar.gz", b""), "is an empty file")
    dataset("random-tar-gz", write("random.tar.gz", os.urandom(4096).replace(b"\x1f", b"x")),
            "is not a tar or .tar.gz archive")
    zipped = root / "zipped.tar.gz"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("train/a/1.png", b"x")
    dataset("zip-as-tar-gz", zipped, "is a zip file")
    truncated = tar_folder(good_data, root / "cut.tar.gz")
    truncated.write_bytes(truncated.read_bytes()[:300])
    dataset("truncated-tar-gz", truncated, "truncated or corrupt")
    dataset("text-file", write("notes.txt", "hello"), "expected a folder or a .tar.gz")
    write("empty-dir/test/a/.keep", "")
    dataset("no-train", root / "empty-dir", "no images under train")
    dataset("one-class", folder("one", classes=1), "one class")
    corrupt = folder("corrupt")
    (corrupt / "train" / "class1" / "002.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    dataset("corrupt-image", corrupt, "002.png")
    mixed = folder("mixed")
    Image.new("RGB", (20, 12)).save(mixed / "train" / "class0" / "wide.png")
    dataset("mixed-sizes", mixed, "--image-size")
    bomb = folder("bomb")
    (bomb / "train" / "class0" / "bomb.png").write_bytes(png_header(20000, 12000))
    dataset("decompression-bomb", bomb, "too many pixels")
    huge = folder("huge", classes=2, per_class=1, test_per_class=1)
    Image.new("RGB", (1500, 1100)).save(huge / "train" / "class0" / "000.png")
    dataset("full-size-photo", huge, "--image-size")
    case("dataset-tar-no-images", [*search, "--dataset",
                                   str(_tar_of_text(root / "text.tar.gz"))], "no images")

    # -- experiment files ---------------------------------------------------------------------
    def experiment(name: str, text: str | bytes, needle: str, *extra: str) -> None:
        path = write(f"exp-{name}.yaml", text)
        case(f"experiment-{name}", [*search, "--dataset", str(good_data), "--experiment",
                                    str(path), *extra], needle)

    experiment("not-yaml", "trainer: {epochs: 3\n", "not valid YAML")
    experiment("list", "- 1\n- 2\n", "mapping")
    experiment("unknown-key", "trainer: {epoch: 3}\n", "trainer.epoch")
    experiment("lr-nan", "trainer: {lr: .nan}\n", "trainer.lr")
    experiment("momentum-nan", "trainer: {momentum: .nan}\n", "trainer.momentum")
    experiment("warmup-inf", "trainer: {warmup_epochs: .inf}\n", "trainer.warmup_epochs")
    experiment("widths", "trainer: {model: {widths: [0, -5]}}\n", "trainer.model.widths[0]")
    experiment("trainer-5", "trainer: 5\n", "'trainer'", "--epochs", "1")
    experiment("billion-laughs",
               "a: &a [x, x, x, x, x, x, x, x, x]\n"
               + "".join(f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
                         for p, n in zip("abcdefgh", "bcdefghi"))
               + "smoke: {search: {baselines: *i}}\n", "expands to more than")
    experiment("deep", "smoke: " + "[" * 3000 + "]" * 3000 + "\n", "nested too deeply")
    experiment("binary", b"\xff\xfe\x00\x01binary", "not a YAML text file")
    experiment("flip-string", "base_augment: {flip: 'false'}\n", "base_augment.flip")
    experiment("crop-big", "base_augment: {crop_padding: big}\n", "base_augment.crop_padding")
    experiment("image-size-0", "data: {image_size: 0}\n", "data.image_size")
    experiment("seed-2-32", "search: {seed: 4294967295}\n", "above the maximum 4294967")
    case("experiment-directory", [*search, "--experiment", str(root)], "is a directory")
    case("experiment-dev-zero", [*search, "--experiment", "/dev/zero"], "not a regular file")

    # -- search spaces -------------------------------------------------------------------------
    def space(name: str, text: str, needle: str) -> None:
        path = write(f"space-{name}.yaml", text)
        case(f"space-{name}", [*search, "--dataset", str(good_data), *tiny, "--space",
                               str(path)], needle)

    space("nan-range", "type: randaugment\nmagnitude: {float: [.nan, 30]}\n", "magnitude")
    space("nan-step", "type: randaugment\nmagnitude: {float: [0, 30], step: .nan}\n",
          "magnitude")
    space("inverted", "type: randaugment\nnum_ops: {int: [3, 1]}\n", "num_ops")
    space("unknown-type", "type: fancyaugment\n", "'type'")
    space("unknown-op", "type: randaugment\nops: [Rotate, Blur]\n", "Blur")
    case("space-directory", [*search, "--dataset", str(good_data), "--space", str(root)],
         "is a directory")
    case("space-missing", [*search, "--dataset", str(good_data), "--space", "nope"], "nope")

    # -- policy files --------------------------------------------------------------------------
    def policy(name: str, content: str | bytes, needle: str, command: str = "show") -> None:
        path = write(f"policy-{name}.json", content)
        argv = [command, str(path)] + (["--to", "torchvision"] if command == "export" else [])
        case(f"policy-{name}", argv, needle)

    good = randaugment(2, 9).to_dict()

    def with_(**changes: Any) -> str:
        return json.dumps({**good, **changes})

    policy("deep", "[" * 100_000 + "]" * 100_000, "nested too deeply")
    policy("image-size-5", with_(source={"image_size": 5}), "source.image_size")
    policy("magnitude-1e400", with_(magnitude=1).replace('"magnitude": 1,',
                                                         '"magnitude": 1e400,'), "'magnitude'")
    policy("magnitude-10-400", with_(magnitude=1).replace('"magnitude": 1,',
                                                          f'"magnitude": {10**400},'),
           "'magnitude'", "export")
    policy("flip-string", with_(base={"flip": "false"}), "base.flip")
    policy("truncated", with_()[:40], "truncated")
    policy("binary", b"\x89PNG\r\n\x1a\n\x00", "not a JSON text file")
    policy("schema", with_(schema="policysearch.policy/v9"), "'schema'")
    policy("ops", with_(ops=["Rotate", "Blur"]), "Blur", "export")
    big = write("policy-big.json", with_(source={"note": "x" * (2 << 20)}))
    case("policy-over-1mib", ["show", str(big)], "byte limit")
    case("policy-dev-zero", ["show", "/dev/zero"], "not a regular file")
    case("policy-directory", ["export", str(root), "--to", "timm"], "is a directory")

    # -- storage and tracking URIs -------------------------------------------------------------
    ok_search = ["search", "--dataset", str(good_data), *tiny, "--export", str(root / "o.json")]
    case("storage-under-a-file", [*ok_search, "--tracking-uri", f"sqlite:///{root}/mlflow.db",
                                  "--storage", f"sqlite:///{regular}/optuna.db"], "storage")
    case("storage-not-a-url", [*ok_search, "--tracking-uri", f"sqlite:///{root}/mlflow.db",
                               "--storage", "optuna.db"], "expected a URL")
    case("tracking-under-a-file", [*ok_search, "--storage", f"sqlite:///{root}/optuna.db",
                                   "--tracking-uri", f"sqlite:///{regular}/mlflow.db"],
         "MLflow tracking store")
    case("tracking-unknown-scheme", [*ok_search, "--storage", f"sqlite:///{root}/optuna.db",
                                     "--tracking-uri", "bogus://x"], "MLflow tracking store")

    # -- numeric flags -------------------------------------------------------------------------
    flags = [
        ("validate-seeds", ["validate", str(good_policy), "--seeds", "-1"], "--seeds"),
        ("validate-epochs", ["validate", str(good_policy), "--epochs", "-1"], "--epochs"),
        ("search-trials", [*search, "--trials", "-1"], "--trials"),
        ("search-epochs", [*search, "--epochs", "0"], "--epochs"),
        ("search-timeout-nan", [*search, "--timeout", "nan"], "--timeout"),
        ("search-batch-size", [*search, "--batch-size", "abc"], "--batch-size"),
        ("search-image-size", [*search, "--image-size", "0"], "--image-size"),
        ("search-workers", [*search, "--workers", "-2"], "--workers"),
        ("search-seed-2-32", [*search, "--dataset", str(good_data), *tiny, "--seed",
                              "4294967295"], "--seed: must be at most 4294967"),
        ("show-epochs", ["show", str(good_policy), "--epochs", "-3"], "--epochs"),
        ("preview-images", ["preview", str(good_policy), "--images", "0"], "--images"),
    ]
    for name, argv, needle in flags:
        case(f"flag-{name}", argv, needle)

    # -- environment variables (checked before any command) -------------------------------------
    for variable, value in (("HEARTBEAT_SECONDS", "abc"), ("HEARTBEAT_SECONDS", "0"),
                            ("MAX_DATA_BYTES", "1.5e9"), ("WORKERS", "two")):
        case(f"env-{variable.lower()}-{value}", [*search, "--dataset", str(good_data), *tiny],
             f"POLICYSEARCH_{variable}={value!r}", env={f"POLICYSEARCH_{variable}": value})

    # -- study names (they also name the policy file): refused before the search ---------------
    postgres = "postgresql://root@127.0.0.1:5432/test"
    no_export = [a for a in search if a != "--export" and a != str(root / "out.json")]
    for name, study, needle in (("600-postgres", "s" * 600, "600 characters long"),
                                ("300", "s" * 300, "at most 100"),
                                ("dot-dot", "../../../x", "not a study name"),
                                ("slash", "a/b", "not a study name"),
                                ("quote", "it's", "not a study name")):
        storage = ["--storage", postgres] if "postgres" in name else []
        case(f"study-name-{name}", [*no_export, *storage, "--dataset", str(good_data), *tiny,
                                    "--study-name", study], needle)
    case("study-name-worker", ["worker", "--study-name", "../x", "--storage",
                               f"sqlite:///{root}/optuna.db"], "not a study name")

    # -- joining a study that does not exist: answered at once, no storage file created -------
    for command in ("worker", "sync-mlflow"):
        case(f"study-missing-storage-{command}", [command, "--study-name", "nope", "--storage",
                                                  f"sqlite:///{root}/none/optuna.db"],
             "there is no storage")
        case(f"study-missing-{command}", [command, "--study-name", "nope", "--storage",
                                          f"sqlite:///{root}/studies.db"],
             "does not exist in this storage")

    case("study-missing-worker-waits", ["worker", "--study-name", "nope", "--storage",
                                        f"sqlite:///{root}/studies.db", "--wait-for-study", "1"],
         "does not exist in this storage after 1 s")

    # -- preview: output and size checked before any work ----------------------------------------
    case("preview-out-under-a-file", ["preview", str(good_policy), "--dataset", str(good_data),
                                      "--out", str(regular / "p.png")], "is a file, not a folder")
    case("preview-out-a-folder", ["preview", str(good_policy), "--dataset", str(good_data),
                                  "--out", str(root)], "is a folder")
    case("preview-epochs-100000", ["preview", str(good_policy), "--epochs", "100000"],
         "--epochs: must be at most 32")
    case("preview-grid-too-large", ["preview", str(good_policy), "--dataset",
                                    str(folder("large", classes=2, per_class=1, size=600)),
                                    "--epochs", "32"], "--image-size")
    case("preview-images-1000", ["preview", str(good_policy), "--images", "1000"],
         "--images: must be at most 16")

    # -- validate: test classes matched by name ------------------------------------------------
    renamed = folder("renamed")
    (renamed / "test" / "class2").rename(renamed / "test" / "klass2")
    exp = write("tiny.yaml", yaml.safe_dump({**TINY_EXPERIMENT, "data": {
        "train_size": 6, "val_size": 6, "selection_size": 3, "split_seed": 0},
        "target": {"train_size": 9}}))
    case("validate-renamed-test-class",
         ["validate", str(good_policy), "--dataset", str(renamed), "--experiment", str(exp),
          "--epochs", "1", "--seeds", "2"], "only in test/: klass2")
    return cases, good_policy, good_data


def _tar_of_text(path: Path) -> Path:
    import io

    with tarfile.open(path, "w:gz") as archive:
        data = b"no images here"
        info = tarfile.TarInfo("README")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("fuzz")
    cases, good_policy, good_data = build_cases(root)
    (root / "cases.json").write_text(json.dumps(cases))
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(study_name="another", storage=f"sqlite:///{root}/studies.db")
    cache = root / "cache"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "POLICYSEARCH_CACHE_DIR": str(cache)}
    result = subprocess.run([sys.executable, "-c", DRIVER, str(root / "cases.json"),
                             str(good_policy), str(root / "results.json"),
                             f"sqlite:///{root}/mlflow.db"], cwd=root, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((root / "results.json").read_text())
    return {"root": root, "cases": {c["id"]: c for c in cases}, "results": results,
            "good_policy": good_policy, "good_data": good_data, "env": env}


def _case_ids() -> list[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        return [c["id"] for c in build_cases(Path(scratch))[0]]


CASE_IDS = _case_ids()


def test_there_are_at_least_40_cases_across_every_entry_point() -> None:
    assert len(CASE_IDS) >= 40
    kinds = {name.split("-")[0] for name in CASE_IDS}
    assert {"dataset", "experiment", "space", "policy", "storage", "tracking",
            "flag", "env"} <= kinds


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_malformed_input_is_one_line(fuzz: dict[str, Any], case_id: str) -> None:
    case, result = fuzz["cases"][case_id], fuzz["results"][case_id]
    stderr = result["stderr"]
    assert "Traceback" not in stderr and "Traceback" not in result["stdout"], stderr
    assert result["code"] not in (0, None, "raised"), (case["argv"], result)
    lines = [line for line in stderr.splitlines() if line.strip()]
    problems = [line for line in lines if not line.startswith("policysearch: note: ")]
    assert len(problems) == 1, (case["argv"], stderr)
    assert "error: " in problems[0] and case["needle"] in problems[0], problems[0]
    assert result["after"] == 0, ("the next command failed", result["after_stderr"])


def test_normal_commands_work_after_the_batch(fuzz: dict[str, Any]) -> None:
    """Fresh processes: a policy is shown and the good dataset loads from an intact cache."""
    root, env = fuzz["root"], fuzz["env"]
    show = subprocess.run([sys.executable, "-m", "policysearch", "show",
                           str(fuzz["good_policy"])], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)
    assert show.returncode == 0 and show.stdout.startswith("RandAugment(n=2, m=9"), show.stderr
    code = ("from policysearch.data.datasets import load_part;"
            f"p = load_part({str(fuzz['good_data'])!r}, 'train');"
            "print(p.x[:6].shape)")
    load = subprocess.run([sys.executable, "-c", code], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert load.returncode == 0 and "(6, 16, 16, 3)" in load.stdout, load.stderr
    leftovers = [p.name for p in (root / "cache").glob("*")
                 if p.suffix == ".tmp" or ".tmp" in p.name] if (root / "cache").exists() else []
    assert leftovers == []
    assert not (root / "out.json").exists() and not (root / "o.json").exists(), \
        "no case got as far as exporting a policy"
    assert not (root / "policies").exists() and not (root / "none").exists(), \
        "nothing written by a refused study name or a missing study"
