"""scenarios/fileio.py: the one ConfigError, command-line values, dotted keys, atomic writes."""
import math
import os

import pytest

from scenarios import fileio
from scenarios.fileio import (ConfigError, atomic_write_text, parse_value, read_yaml_mapping,
                              set_dotted, sha256_file)


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
