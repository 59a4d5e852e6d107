"""The project's file primitives, the bottom layer that every package reads and writes through.

- YAML: :func:`read_yaml_mapping` (one-line errors naming the file), :func:`parse_value` for
  command-line values and :func:`set_dotted` for dotted overrides; :class:`ConfigError` is the
  error of every configuration file and override.
- Atomic writes: :func:`atomic_path` / :func:`atomic_write_text` write a temporary file beside the
  target, fsync it, then ``os.replace``: a crash at any moment leaves either the old file or the
  complete new one, never a half-written file under the final name.
- :func:`sha256_file`: the hash of a file's bytes; :func:`process_alive`: whether a process id of
  this machine is running (temporary folders named by their writer's pid are stale when it is not).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator, Type

import yaml


class ConfigError(ValueError):
    """A configuration file or override is invalid (the message names the file and the field)."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with two fixes for config files: floats as YAML 1.2 reads them
    (``3e-4`` and ``1e5`` are numbers, where YAML 1.1 reads strings), and a key given twice in one
    mapping is an error (YAML 1.1 silently keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def load_yaml(text: str) -> Any:
    """``text`` parsed as YAML with :class:`_Loader`'s fixes."""
    return yaml.load(text, Loader=_Loader)


def read_yaml_mapping(path: Path, error: Type[Exception] = ConfigError) -> dict:
    """The mapping in ``path`` (empty file -> {}); invalid YAML (a duplicate key included) or
    another top level raises ``error`` naming the file."""
    try:
        data = load_yaml(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: the top level must be a mapping")
    return data


def parse_value(text: str) -> Any:
    """A command-line value parsed as YAML (``3`` -> int, ``3e-4`` -> float, ``[a, b]`` -> list,
    ``none`` -> None)."""
    if text.strip().lower() in {"none", "null"}:
        return None
    try:
        return load_yaml(text)
    except yaml.YAMLError:
        return text  # e.g. a path with a colon: kept as the string it is


def set_dotted(data: dict, dotted: str, value: Any, source: str) -> None:
    """``data[a][b][c] = value`` for ``dotted`` = ``"a.b.c"``, creating missing (or null) mappings;
    a non-mapping on the way is a ConfigError naming ``source`` and the key."""
    *parents, last = dotted.split(".")
    node = data
    for key in parents:
        if node.get(key) is None:
            node[key] = {}
        if not isinstance(node[key], dict):
            raise ConfigError(f"{source}: {dotted}: {key!r} is not a mapping")
        node = node[key]
    node[last] = value


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # mkstemp creates 0600; results and checkpoints are meant to be shared
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine exists (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
