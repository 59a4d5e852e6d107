"""The project's file primitives, the bottom layer that every package reads and writes through.

- YAML: :func:`read_yaml_mapping` (one-line errors naming the file), :func:`parse_value` for
  command-line values and :func:`set_dotted` for dotted overrides; :class:`ConfigError` is the
  error of every configuration file and override.
- Atomic writes: :func:`atomic_path` / :func:`atomic_write_text` write a temporary file beside the
  target, fsync it, then ``os.replace``: a crash at any moment leaves either the old file or the
  complete new one, never a half-written file under the final name.
- Temporary names end in :func:`owner_tag` (``@<host>@<pid>``, before a ``.tmp`` suffix):
  :func:`clean_stale_temps` removes those whose writer was killed (this host's, when the pid is not
  running, :func:`process_alive`; another host's, or an untagged one a caller names, after
  :data:`STALE_AFTER_S`) and never one of a live writer. Called when a run starts writing into its
  output folder and when the feature cache, the synthetic cache or a ``prepare`` output is opened.
- :func:`sha256_file`: the hash of a file's bytes, read in chunks; :func:`cached_sha256`: the
  hashes of many files, remembered in a JSON cache by (absolute path, size, mtime, ctime, inode)
  so that a file is read again only when it changed (or was touched).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Type

import yaml

log = logging.getLogger(__name__)

#: a temporary file or folder of another host (or an untagged one) this old is a leftover
STALE_AFTER_S = 24 * 3600
#: :func:`atomic_path`'s temporary files (``.<name>.<random>@<host>@<pid>.tmp``)
ATOMIC_TEMPS = ".*@*@*.tmp"
_OWNER = re.compile(r"@([^@/]+)@(\d+)(?:\.tmp)?$")


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
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed.
    The temporary file is ``.<name>.<random>@<host>@<pid>.tmp`` beside ``path``: when the writer is
    killed, :func:`clean_stale_temps` removes it later."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f"{owner_tag()}.tmp")
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


def owner_tag() -> str:
    """``@<host>@<pid>``: how every temporary name this process writes ends (before ``.tmp``)."""
    return f"@{socket.gethostname()}@{os.getpid()}"


def make_temp_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """A new empty folder ``<parent>/<prefix><random>@<host>@<pid>`` (parent created)."""
    Path(parent).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=parent, prefix=prefix, suffix=owner_tag()))


def stale_temp(path: Path) -> bool:
    """Whether the temporary ``path`` is a killed writer's leftover: tagged by this host, when its
    pid is not running; else (another host's, or untagged) when nothing in it changed for
    :data:`STALE_AFTER_S`."""
    owner = _OWNER.search(path.name)
    if owner and owner[1] == socket.gethostname():
        return not process_alive(int(owner[2]))
    return _age_s(path) > STALE_AFTER_S


def clean_stale_temps(folder: str | os.PathLike, patterns: Iterable[str] = (ATOMIC_TEMPS,),
                      recursive: bool = False) -> List[str]:
    """Remove the stale temporary files and folders (:func:`stale_temp`) in ``folder`` (and, if
    ``recursive``, its subfolders) whose names match one of the glob ``patterns``; returns their
    paths relative to ``folder``. A live writer's are kept."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    find = folder.rglob if recursive else folder.glob
    for path in sorted({p for pattern in patterns for p in find(pattern)}):
        if not stale_temp(path):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        removed.append(str(path.relative_to(folder)))
    return removed


def _age_s(path: Path) -> float:
    """Seconds since ``path`` (or, for a folder, anything directly in it) last changed."""
    try:
        children = list(path.iterdir()) if path.is_dir() else []
        stamps = [p.stat().st_mtime for p in (path, *children)]
    except FileNotFoundError:  # being removed by another process
        return 0.0
    return time.time() - max(stamps)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_sha256(paths: Sequence[str | os.PathLike], cache_file: Optional[str | os.PathLike] = None,
                  progress: bool = True) -> List[str]:
    """The sha256 of each file of ``paths`` (:func:`sha256_file`), remembered in the JSON
    ``cache_file`` (``{absolute path: {"stat": [size, mtime_ns, ctime_ns, inode], "sha256": ...}}``,
    written atomically; ``None``: no cache): a file is read again only when one of these changed
    (a touched file is hashed again and keeps its digest; ctime and inode also catch a file
    replaced with its old modification time restored; a rewrite to the same size within one tick
    of the file system's clock after the hashing is not seen). An unreadable cache is rebuilt with a
    warning; a read-only one only costs the hashing next time. With ``progress``, a bar over the
    bytes to hash appears when hashing lasts over a second."""
    known = _read_hash_cache(cache_file)
    rows = []
    for path in paths:
        st = os.stat(path)  # before hashing: a file changed while it is read is hashed again next time
        rows.append((os.path.realpath(path), [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]))
    todo = {key: stamp for key, stamp in rows if not _cached(known.get(key), stamp)}
    if todo:
        from tqdm.auto import tqdm

        with tqdm(total=sum(stamp[0] for stamp in todo.values()), unit="B", unit_scale=True, delay=1.0,
                  desc=f"hashing {len(todo)} file(s)", disable=not progress, leave=False) as bar:
            for key, stamp in todo.items():
                known[key] = {"stat": stamp, "sha256": sha256_file(key)}
                bar.update(stamp[0])
        if cache_file is not None:
            kept = {k: v for k, v in known.items() if k in todo or os.path.exists(k)}
            with contextlib.suppress(OSError):
                atomic_write_text(cache_file, json.dumps(kept, indent=0, sort_keys=True))
    return [known[key]["sha256"] for key, _ in rows]


def _cached(entry: Any, stamp: list) -> bool:
    return isinstance(entry, dict) and entry.get("stat") == stamp and isinstance(entry.get("sha256"), str)


def _read_hash_cache(cache_file: Optional[str | os.PathLike]) -> dict:
    if cache_file is None:
        return {}
    try:
        known = json.loads(Path(cache_file).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        known = exc
    if not isinstance(known, dict):
        reason = known if isinstance(known, Exception) else "not a JSON object"
        log.warning("%s: unreadable hash cache (%s); rebuilding it", cache_file, " ".join(str(reason).split()))
        return {}
    return known
