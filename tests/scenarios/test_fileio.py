"""scenarios/fileio.py: the one ConfigError, command-line values, dotted keys, atomic writes, the
cleanup of killed writers' temporary files, the hash cache."""
import math
import os

import pytest

from scenarios import fileio
from scenarios.fileio import (STALE_AFTER_S, ConfigError, atomic_path, atomic_write_text,
                              cached_sha256, clean_stale_temps, parse_value, read_yaml_mapping,
                              set_dotted, sha256_file, stale_temp)


def test_one_config_error_class():
    import benchmark.engine.config
    import scenarios.config

    assert scenarios.config.ConfigError is ConfigError is benchmark.engine.config.ConfigError


def test_parse_value():
    assert parse_value("3") == 3
    assert parse_value("none") is None
    assert parse_value("[a, b]") == ["a", "b"]
    assert parse_value("1e-4") == "1e-4" or math.isclose(float(parse_value("1e-4")), 1e-4)


def test_set_dotted_and_yaml_errors(tmp_path):
    data = {"a": None}
    set_dotted(data, "a.b.c", 1, "src")
    assert data == {"a": {"b": {"c": 1}}}
    with pytest.raises(ConfigError, match="src: a.b.c.d: 'c' is not a mapping"):
        set_dotted(data, "a.b.c.d", 2, "src")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        read_yaml_mapping(bad)
    bad.write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        read_yaml_mapping(bad)


def test_atomic_write_leaves_old_file_or_new_one(tmp_path, monkeypatch):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "one")
    assert path.read_text() == "one" and os.listdir(tmp_path) == ["f.txt"]
    monkeypatch.setattr(fileio.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "two")
    assert path.read_text() == "one" and os.listdir(tmp_path) == ["f.txt"]  # no temporary left
    import hashlib
    assert sha256_file(path) == hashlib.sha256(b"one").hexdigest()


def test_temporary_files_of_dead_writers_are_removed_live_ones_kept(tmp_path, dead_pid):
    import socket
    import time

    host = socket.gethostname()
    with atomic_path(tmp_path / "r.json") as tmp:  # named with this host and pid
        assert tmp.name.startswith(".r.json.") and tmp.name.endswith(f"@{host}@{os.getpid()}.tmp")
        assert not stale_temp(tmp)
    dead = tmp_path / f".r.json.k1l2m3@{host}@{dead_pid}.tmp"
    live = tmp_path / f".s.json.n4o5p6@{host}@{os.getpid()}.tmp"
    other_old = tmp_path / f".t.json.q7r8s9@elsewhere@{dead_pid}.tmp"  # another host's: by age
    other_fresh = tmp_path / f".u.json.t1u2v3@elsewhere@{dead_pid}.tmp"
    untagged = tmp_path / ".notes.tmp"  # not named by a writer of this project: never touched
    nested = tmp_path / ".state" / "abc" / f".state.pt.w4x5y6@{host}@{dead_pid}.tmp"
    nested.parent.mkdir(parents=True)
    for path in (dead, live, other_old, other_fresh, untagged, nested):
        path.write_text("half")
    stale = time.time() - STALE_AFTER_S - 60
    os.utime(other_old, (stale, stale))
    assert clean_stale_temps(tmp_path) == sorted([dead.name, other_old.name])
    assert clean_stale_temps(tmp_path, recursive=True) == [".state/abc/" + nested.name]
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == sorted(
        ["r.json", live.name, other_fresh.name, untagged.name])


def test_cached_sha256_reads_a_file_once_per_version(tmp_path, monkeypatch, caplog):
    calls = []
    real = fileio.sha256_file
    monkeypatch.setattr(fileio, "sha256_file", lambda p: calls.append(p) or real(p))
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"aaaa")
    b.write_bytes(b"bbbb")
    cache = tmp_path / "cache" / "sha.json"
    first = cached_sha256([a, b], cache, progress=False)
    assert first == [real(a), real(b)] and len(calls) == 2
    assert cached_sha256([b, a], cache, progress=False) == first[::-1] and len(calls) == 2
    before = a.stat().st_mtime_ns
    a.write_bytes(b"AAAA")  # same size, new content, a second later (a rewrite within one tick of
    os.utime(a, ns=(before, before + 10**9))  # the file system's clock would look unchanged)
    assert cached_sha256([a, b], cache, progress=False) == [real(a), first[1]] and len(calls) == 3
    cache.write_text("[1, 2")  # damaged: rebuilt, with a warning naming it
    assert cached_sha256([a], cache, progress=False) == [real(a)] and len(calls) == 4
    assert f"{cache}: unreadable hash cache" in caplog.text and "rebuilding it" in caplog.text
    assert cached_sha256([a], None, progress=False) == [real(a)] and len(calls) == 5  # no cache
