"""Reading small user files (policies, experiments, spaces) safely.

A file given by the user may be a directory, a device (``/dev/zero``), huge or binary. These
readers refuse each case in one line, without reading more than the size limit, and bound what
a YAML file may expand to (aliases make a 1 KB file stand for billions of nodes).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

MAX_BYTES = 1 << 20
"""Largest policy, experiment or space file read (1 MiB; real ones are a few KB)."""
MAX_NODES = 20_000
"""Most values a YAML file may stand for once its aliases are expanded."""


def read_text(path: str | os.PathLike[str], what: str, error: type[Exception],
              limit: int = MAX_BYTES, kind: str = "text") -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes, else ``error`` (one line)."""
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} {path}: not found") from None
    except OSError as err:
        raise error(f"{what} {path}: cannot be read ({err.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{what} {path}: is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{what} {path}: is not a regular file (a device, pipe or socket)")
    if info.st_size > limit:
        raise error(f"{what} {path}: is {info.st_size:,} bytes, over the {limit:,}-byte limit; "
                    "is it the right file?")
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as err:
        raise error(f"{what} {path}: cannot be read ({err.strerror})") from None
    if len(data) > limit:  # grew since stat
        raise error(f"{what} {path}: is over the {limit:,}-byte limit")
    try:
        return data.decode("utf-8-sig")  # a byte-order mark, as other readers accept it
    except UnicodeDecodeError:
        raise error(f"{what} {path}: is not a {kind} file (not UTF-8); is it the right file?") \
            from None


def load_yaml(text: str, origin: str, error: type[Exception], max_nodes: int = MAX_NODES) -> Any:
    """Parse YAML safely; refuse syntax errors, deep nesting and alias bombs in one line."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise error(f"{origin}: not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise error(f"{origin}: nested too deeply to be a config file") from None
    nodes = expanded_size(data, max_nodes)
    if nodes is None:
        raise error(f"{origin}: expands to more than {max_nodes:,} values (YAML aliases "
                    "repeated over and over, or one that contains itself); write the values "
                    "out instead")
    return data


def expanded_size(data: Any, limit: int) -> int | None:
    """How many values ``data`` holds with shared parts counted each time they appear;
    ``None`` above ``limit`` or when a part contains itself."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        item, done = stack.pop()
        if not isinstance(item, (dict, list)):
            continue
        key = id(item)
        children = list(item.keys()) + list(item.values()) if isinstance(item, dict) else item
        if done:
            active.discard(key)
            total = 1 + sum(sizes.get(id(c), 1) if isinstance(c, (dict, list)) else 1
                            for c in children)
            if total > limit:
                return None
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in active:
            return None  # contains itself
        active.add(key)
        stack.append((item, True))
        for child in children:
            if isinstance(child, (dict, list)):
                if id(child) in active:
                    return None
                stack.append((child, False))
    return sizes.get(id(data), 1) if isinstance(data, (dict, list)) else 1
