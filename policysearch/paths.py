"""Where the project's data files live: experiments, search spaces, results."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS_DIR = PROJECT_ROOT / "experiments"
SPACES_DIR = PROJECT_ROOT / "search_spaces"
RESULTS_DIR = EXPERIMENTS_DIR / "results"


def check_writable_file(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as a file this process can write later, or a one-line ``PolicySearchError``.

    Checked before any long work starts, so that its result is not lost at the end: a path
    that is a folder (or names one with a trailing slash), a parent that is a file, and a place
    that cannot be written (read-only, no permission: tried with a probe file, so it holds for
    root too). Nothing is created but the probe, which is removed.
    """
    import tempfile

    from policysearch.errors import PolicySearchError

    text = os.fspath(path)
    target = Path(text).expanduser()
    if text.endswith(("/", os.sep)) or target.is_dir():
        raise PolicySearchError(f"{what} {text}: is a folder; give a file name such as "
                                f"{(target / 'policy.json').as_posix()}")
    if target.exists() and not target.is_file():
        raise PolicySearchError(f"{what} {text}: exists and is not a regular file")
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise PolicySearchError(f"{what} {text}: {parent} is a file, not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".policysearch-probe-"):
            pass
        if target.exists():
            with open(target, "a"):
                pass
    except OSError as err:
        where = target if target.exists() else parent
        raise PolicySearchError(f"{what} {text}: cannot write in {where} "
                                f"({err.strerror or err})") from None
    return target


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write ``content`` to a temporary name beside ``path``, then rename it into place: a
    reader (or a crash) never sees half a file."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from the team
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if err.filename is None:  # a full disk names no file: say which write it stopped
            err.filename = str(path)
        raise
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
