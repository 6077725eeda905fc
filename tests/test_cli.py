"""The command line, run as a user runs it: ``python -m policysearch ...`` in a subprocess.

Only the fast commands (show, export, preview on a tiny dataset); every user error is one line
on stderr, exit code 2, no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_image_folder

from policysearch import autoaugment, no_augment, randaugment, trivialaugment, write_policy

PYTHON = sys.executable


def run(*args: str, cwd: Path, env: dict[str, str] | None = None, code: str | None = None,
        merge: bool = False) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it (``merge``: stderr into stdout, in the order written)."""
    command = [PYTHON, "-c", code, *args] if code else [PYTHON, "-m", "policysearch", *args]
    full_env = {**os.environ, **(env or {})}
    full_env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the tool's own default, as a user gets it
    return subprocess.run(command, cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT if merge else subprocess.PIPE, text=True,
                          timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("policysearch: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def policies(tmp_path: Path) -> dict[str, Path]:
    ra = randaugment(2, 9).with_source(dataset="cifar10", study="s1", space="randaugment",
                                       trial=4, decision="RA(N=2,M=9) changes accuracy over "
                                       "crop+flip by +2.00 pts", reason="it beats TA")
    found = {
        "ra": ra,
        "ra_subset": randaugment(1, 12, ops=["Rotate", "Solarize"]),
        "ra_cutout": randaugment(2, 9, ops=["Cutout", "Rotate"]),
        "ta": trivialaugment(),
        "aa": autoaugment([[("Rotate", 0.5, 10), ("Invert", 0.2, 0)]]),
        "none": no_augment(),
    }
    out = {}
    for name, policy in found.items():
        data = policy.to_dict()
        if name == "ra":
            data["base"] = {"crop_padding": 4, "flip": True}
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(data))
        out[name] = path
    return out


# ----------------------------------------------------------------------------------------------
# show


def test_show_prints_the_policy_and_each_op(policies: dict[str, Path], tmp_path: Path) -> None:
    result = run("show", str(policies["ra_subset"]), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "RandAugment(n=1, m=12, ops=[Rotate, Solarize])"
    assert lines[1].startswith("RandAugment: each image applies 1 op(s) drawn uniformly from 2")
    assert lines[2:] == ["  Rotate ±12.0°", "  Solarize threshold 153.0"]
    assert result.stderr == ""


def test_show_prints_base_and_provenance(policies: dict[str, Path], tmp_path: Path) -> None:
    result = run("show", str(policies["ra"]), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("RandAugment(n=2, m=9, ops=[all 14])\n")
    assert len([line for line in out.splitlines() if line.startswith("  ")]) == 14
    assert "  Rotate ±9.0°" in out.splitlines()
    assert "crop padding 4, flip True" in out
    assert "found on cifar10 by study 's1' (space randaugment, trial 4)" in out
    assert "decision: RA(N=2,M=9) changes accuracy over crop+flip by +2.00 pts" in out
    assert "why: it beats TA" in out


def test_show_other_policy_types(policies: dict[str, Path], tmp_path: Path) -> None:
    aa = run("show", str(policies["aa"]), cwd=tmp_path)
    assert aa.stdout.splitlines()[0] == "AutoAugment([Rotate(p=0.5, m=10) + Invert(p=0.2, m=0)])"
    assert "  1. p=0.5: Rotate ±10.0°, then p=0.2: Invert" in aa.stdout.splitlines()
    none = run("show", str(policies["none"]), cwd=tmp_path)
    assert none.stdout.splitlines() == [
        "NoAugment()", "no policy ops: the trainer's base augmentation only"]


def test_show_epochs_explains(policies: dict[str, Path], tmp_path: Path) -> None:
    result = run("show", str(policies["ra"]), "--epochs", "10", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "probability an image passes an epoch unchanged by the policy" in out
    assert "expected epochs (of 10) in which an image is seen unaugmented" in out
    assert "probability it is never seen unaugmented in 10 epochs" in out
    assert "(x 162 from the crop and flip)" in out  # 9 x 9 crops x 2 flips from the base
    assert "Assumptions:" in out
    # RA(N=2) over 14 ops, Identity the only neutral op at M=9: (1/14)^2
    assert f"{(1 / 14) ** 2:.4f}" in out
    plain = run("show", str(policies["ra"]), cwd=tmp_path)
    assert "unaugmented" not in plain.stdout


def test_show_does_not_import_tensorflow_or_mlflow(policies: dict[str, Path],
                                                   tmp_path: Path) -> None:
    code = ("import sys\nfrom policysearch.cli.main import main\n"
            "assert main(['show', sys.argv[1], '--epochs', '5']) == 0\n"
            "heavy = sorted(m for m in ('tensorflow', 'keras', 'mlflow', 'optuna', 'jax') "
            "if m in sys.modules)\n"
            "assert not heavy, heavy\n"
            "print('light')\n")
    result = run(str(policies["ra"]), cwd=tmp_path, code=code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("light")


# ----------------------------------------------------------------------------------------------
# export


@pytest.mark.parametrize("name", ["ra", "ra_subset", "ta", "aa"])
def test_export_torchvision_prints_runnable_code(policies: dict[str, Path], tmp_path: Path,
                                                name: str) -> None:
    result = run("export", str(policies[name]), "--to", "torchvision", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "from torchvision.transforms.v2 import functional as F" in result.stdout
    assert "augment = PolicyAugment()" in result.stdout
    assert "# note: exact on PIL images" in result.stdout
    compile(result.stdout, "stdout", "exec")
    assert result.stderr == ""


@pytest.mark.parametrize("target", ["torchvision", "timm", "tf-models"])
def test_export_of_no_augment_is_exact_everywhere(policies: dict[str, Path], tmp_path: Path,
                                                  target: str) -> None:
    result = run("export", str(policies["none"]), "--to", target, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# no policy ops")


@pytest.mark.parametrize("name, target, needle", [
    ("ra_cutout", "timm", "no Cutout"),
    ("ta", "tf-models", "no TrivialAugment"),
    ("ra", "tf-models", "0.1 + 0.18 m"),
])
def test_export_refuses_inexact_in_one_line(policies: dict[str, Path], tmp_path: Path,
                                            name: str, target: str, needle: str) -> None:
    result = run("export", str(policies[name]), "--to", target, cwd=tmp_path)
    assert_one_line_error(result, f"{target} cannot express this policy exactly", needle,
                          "--approximate")
    assert result.stdout == "", "no code printed when refusing"


def test_export_approximate_prints_nearest_code(policies: dict[str, Path],
                                                tmp_path: Path) -> None:
    timm = run("export", str(policies["ra"]), "--to", "timm", "--approximate", cwd=tmp_path)
    assert timm.returncode == 0, timm.stderr
    assert timm.stdout.startswith("# approximate: timm's rand-m3-n2-p1.0-inc1-mmax9")
    assert "rand_augment_transform('rand-m3-n2-p1.0-inc1-mmax9'" in timm.stdout.splitlines()[-1]
    tf = run("export", str(policies["ra_subset"]), "--to", "tf-models", "--approximate",
             cwd=tmp_path)
    assert tf.returncode == 0, tf.stderr
    code = tf.stdout.splitlines()[-1]
    assert code.startswith("augment = tfm_augment.RandAugment(num_layers=1, magnitude=4.0,")
    assert "'Rotate'" not in code and "'Solarize'" not in code and "'Equalize'" in code


# ----------------------------------------------------------------------------------------------
# Errors


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "gone.json"
    for command in (["show", str(missing)], ["export", str(missing), "--to", "timm"]):
        assert_one_line_error(run(*command, cwd=tmp_path), str(missing), "not found")


def test_garbage_json_is_one_line(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{\"schema\": \"policysearch.policy/v1\", \"ty")
    assert_one_line_error(run("show", str(garbage), cwd=tmp_path), str(garbage), "truncated")
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    assert_one_line_error(run("show", str(garbage), cwd=tmp_path), str(garbage), "not a JSON")


def test_invalid_policy_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    data = randaugment(2, 9).to_dict()
    data["magnitude"] = 31
    bad.write_text(json.dumps(data))
    assert_one_line_error(run("export", str(bad), "--to", "torchvision", cwd=tmp_path),
                          "field 'magnitude'", "31 is outside 0..30")


def test_directory_instead_of_file_is_one_line(tmp_path: Path) -> None:
    assert_one_line_error(run("show", str(tmp_path), cwd=tmp_path), str(tmp_path))


@pytest.mark.parametrize("args", [
    ["export", "p.json", "--to", "keras-cv"],
    ["show", "p.json", "--epochs", "ten"],
    ["show"],
    ["frobnicate"],
])
def test_bad_arguments_exit_2_without_traceback(tmp_path: Path, args: list[str]) -> None:
    write_policy(randaugment(2, 9), tmp_path / "p.json")
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("policysearch")
    assert "error:" in result.stderr
    assert result.stdout == ""


# ----------------------------------------------------------------------------------------------
# preview (imports TensorFlow: one run)


def test_preview_writes_a_png(policies: dict[str, Path], tmp_path: Path) -> None:
    dataset = write_image_folder(tmp_path / "tiny", classes=3, per_class=2, size=16,
                                 test_per_class=1)
    out = tmp_path / "grids" / "preview.png"
    env = {"POLICYSEARCH_CACHE_DIR": str(tmp_path / "cache")}
    result = run("preview", str(policies["ra"]), "--dataset", str(dataset), "--images", "2",
                 "--base", "--out", str(out), cwd=tmp_path, env=env, merge=True)
    assert result.returncode == 0, result.stdout
    # stdout and stderr together: Keras and TensorFlow were loaded, and said nothing (issue 23)
    assert result.stdout.strip() == f"wrote {out}"
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"

    from PIL import Image

    with Image.open(out) as image:
        width, height = image.size
    assert height > 2 * 16 * 3 and width > 16 * 3, "a grid of at least 2 rows of scaled tiles"
    assert not (tmp_path / "previews").exists(), "--out is honoured"
    assert list((tmp_path / "cache").glob("tiny-*-train.npz")), "the dataset was cached there"


def test_a_command_that_loads_tensorflow_speaks_first(tmp_path: Path) -> None:
    """TensorFlow's absl and oneDNN start-up lines are not the first thing a user reads; the
    tool's own error is, and is all there is (issue 23)."""
    write_policy(randaugment(2, 9), tmp_path / "p.json")
    code = ("import sys\nfrom policysearch.cli.main import main\n"
            "code = main(sys.argv[1:])\n"
            "print('tensorflow loaded' if 'tensorflow' in sys.modules else 'not loaded')\n"
            "sys.exit(code)\n")
    result = run("validate", "p.json", "--dataset", str(tmp_path / "missing"), cwd=tmp_path,
                 code=code, merge=True)
    lines = result.stdout.splitlines()
    assert result.returncode == 2 and lines[-1] == "tensorflow loaded", result.stdout
    # the device it would train on first (every training command's first line), then the error
    cores = len(os.sched_getaffinity(0))
    assert lines[:-1] == [f"device: CPU ({cores} cores; no GPU: no nvidia-smi)",
                          f"policysearch: error: dataset '{tmp_path / 'missing'}': no such "
                          "folder or archive"], result.stdout


def test_tensorflow_start_up_lines_are_held_back_but_errors_are_not() -> None:
    from policysearch.cli.quiet import keep

    absl = ("WARNING: All log messages before absl::InitializeLog() is called are written to "
            "STDERR")
    info = ("I0000 00:00:1796216065.438807    7026 port.cc:153] oneDNN custom operations are "
            "on. You may see slightly different numerical results")
    warning = "W0000 00:00:1796216065.438807    7026 cuda_dnn.cc:8310] Unable to register cuDNN"
    error = "E0000 00:00:1796216065.438807    7026 op_kernel.cc:1773] OP_REQUIRES failed"
    python = "/x/keras/src/backend.py:12: UserWarning: something"
    assert [keep(line, 2) for line in (absl, info, warning, error, python)] == [
        False, False, False, True, True]
    assert [keep(line, 0) for line in (absl, info, warning, error)] == [True] * 4
    assert [keep(line, 3) for line in (info, error, python)] == [False, False, True]


# ----------------------------------------------------------------------------------------------
# Numeric flags, workers, make (issue 16)


@pytest.mark.parametrize("args, needle", [
    (["validate", "p.json", "--seeds", "-1"], "--seeds: must be at least 2, got -1"),
    (["validate", "p.json", "--epochs", "-1"], "--epochs: must be at least 1, got -1"),
    (["validate", "p.json", "--epochs", "0"], "--epochs: must be at least 1, got 0"),
    (["validate", "p.json", "--train-size", "x"], "--train-size: expected an integer"),
    (["search", "--trials", "-1"], "--trials: must be at least 0"),
    (["search", "--workers", "0"], "--workers: must be at least 1"),
    (["search", "--timeout", "nan"], "--timeout: must be a positive number"),
    (["search", "--timeout", "-5"], "--timeout: must be a positive number"),
    (["search", "--batch-size", "0"], "--batch-size: must be at least 1"),
    (["search", "--image-size", "4"], "--image-size: must be at least 8"),
    (["search", "--crop-padding", "-2"], "--crop-padding: expected auto or pixels"),
    (["search", "--flip", "maybe"], "--flip: expected true or false"),
    (["show", "p.json", "--epochs", "-3"], "--epochs: must be at least 1"),
    (["preview", "p.json", "--images", "0"], "--images: must be at least 1"),
])
def test_bad_numeric_flags_are_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    write_policy(randaugment(2, 9), tmp_path / "p.json")
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"policysearch {args[0]}: error: ") and needle in lines[0], lines


def test_workers_are_capped_at_the_cores(tmp_path: Path) -> None:
    result = run("search", "--workers", "999", "--dataset", str(tmp_path / "none"),
                 "--storage", f"sqlite:///{tmp_path}/o.db", cwd=tmp_path)
    cores = len(os.sched_getaffinity(0))
    lines = result.stderr.splitlines()
    assert lines[0] == (f"policysearch: note: --workers 999 is more than the {cores} CPU "
                        f"core(s) here; running {cores} worker(s)"), result.stderr
    assert result.returncode == 2 and "no such folder" in lines[-1]


def make_search(*variables: str) -> list[str]:
    """The ``policysearch search`` command ``make search`` would run, as argv."""
    import shlex

    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(["make", "-n", "-s", "search", *variables], cwd=root,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if " search " in x)
    argv = shlex.split(line)
    return argv[argv.index("search") + 1:]


def test_make_search_passes_variables_as_whole_words() -> None:
    assert "--smoke" not in make_search("SMOKE=0")
    assert "--smoke" not in make_search("SMOKE=")
    assert "--smoke" in make_search("SMOKE=1")
    argv = make_search("DATASET=my photos/it's here.tar.gz", "BATCH_SIZE=64", "IMAGE_SIZE=48",
                       "BASE_CROP_PADDING=auto", "BASE_FLIP=false", "EXPORT=out dir/p.json")
    pairs = dict(zip(argv[::2], argv[1::2]))
    assert pairs["--dataset"] == "my photos/it's here.tar.gz"
    assert pairs["--export"] == "out dir/p.json"
    assert (pairs["--batch-size"], pairs["--image-size"]) == ("64", "48")
    assert (pairs["--crop-padding"], pairs["--flip"]) == ("auto", "false")
    from policysearch.cli.args import build_parser

    args = build_parser().parse_args(["search", *argv])
    assert args.dataset == "my photos/it's here.tar.gz" and args.flip is False
    assert args.image_size == 48 and args.crop_padding == "auto" and args.batch_size == 64


def test_make_refuses_an_unknown_smoke_value() -> None:
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(["make", "-n", "search", "SMOKE=maybe"], cwd=root,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "SMOKE must be 1 or 0" in result.stderr


def test_load_hint_says_what_to_do_when_crop_flip_wins(tmp_path: Path) -> None:
    from policysearch.cli.main import load_hint

    path = tmp_path / "p.json"
    hint = load_hint(no_augment(), path)
    assert "keep your training's crop and flip" in hint and "base=True" in hint
    assert "load_transform" in load_hint(randaugment(2, 9), path)


def test_default_study_names_are_valid_study_names() -> None:
    """A study name built from an experiment's name is made valid; a given one is refused."""
    import argparse

    from policysearch.cli.args import safe_study_name, study_name

    assert safe_study_name("cifar10-randaugment_subset-smoke") == \
        "cifar10-randaugment_subset-smoke"
    for raw in ["../../x y", "a/b", ".hidden", "é" * 150, "", "it's"]:
        name = safe_study_name(raw)
        assert study_name(name) == name and "/" not in name and not name.startswith(".")
    for bad in ["../x", "a/b", "x" * 101, "é" * 101, ".x", "-x", "a b", ""]:
        with pytest.raises(argparse.ArgumentTypeError):
            study_name(bad)
