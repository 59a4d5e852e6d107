"""Feature-cache faults (benchmark/engine/feature_cache.py): truncated, overwritten or pre-checksum
entries are reported in one line naming the entry and rebuilt; leftovers of killed builds are
removed when the cache is first used (with the hash caches' killed atomic writes), never a live
writer's."""
import json
import logging
import os
import time

import numpy as np
import pytest
import torch

from benchmark.cli import main
from benchmark.backbones.base import SAMBackbone
from benchmark.engine.feature_cache import FeatureCache
from scenarios.fileio import STALE_AFTER_S
from scenarios.folder import FolderSegmentationDataset


class FakeBackbone(torch.nn.Module):
    """What the cache needs of a backbone, with a cheap deterministic "encoder" (the faults tested
    here do not depend on the features)."""
    name, image_size, _fingerprint = "fake", 256, "fake-weights"

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def features_at(self, images, tap):
        return {"tokens": images.float().unfold(2, 16, 16).unfold(3, 16, 16).mean((-1, -2)) * self.w}

    features_at_taps = SAMBackbone.features_at_taps  # the interface's pass per tap


@pytest.fixture(scope="module")
def backbone():
    return FakeBackbone()


@pytest.fixture()
def dataset(tmp_path, tiny_domain):
    root = tiny_domain(tmp_path / "dom", split="train", n=3, size=48)
    return FolderSegmentationDataset(root, "train", image_size=256, domain_index=0)


@pytest.fixture()
def built(backbone, dataset, tmp_path):
    """(cache, entry folder, the entry's array file, its features) after one build."""
    cache = FeatureCache(tmp_path / "cache", progress=False)
    view = cache.view(backbone, dataset, "block6")
    features = view[1]["features"]["tokens"].clone()
    del view
    entry = cache.entry_dir(backbone, dataset, "block6")
    return cache, entry, entry / "tokens.npy", features


def one_warning(caplog) -> str:
    (record,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "\n" not in record.getMessage()
    return record.getMessage()


def test_meta_records_size_and_sha256_of_each_array(built):
    _, entry, array, _ = built
    import hashlib

    meta = json.loads((entry / "meta.json").read_text())
    assert meta["files"] == {"tokens.npy": {"bytes": array.stat().st_size,
                                                 "sha256": hashlib.sha256(array.read_bytes()).hexdigest()}}


def test_truncated_entry_is_named_and_rebuilt(built, backbone, dataset, caplog):
    cache, entry, array, features = built
    array.write_bytes(array.read_bytes()[:-1000])
    view = cache.view(backbone, dataset, "block6")
    message = one_warning(caplog)
    assert str(entry) in message and "tokens.npy is" in message and "truncated" in message
    assert "rebuilding" in message
    assert torch.equal(view[1]["features"]["tokens"], features)


@pytest.mark.parametrize("damage", ["missing array", "meta unreadable", "no checksums"])
def test_other_damaged_entries_are_rebuilt(built, backbone, dataset, caplog, damage):
    cache, entry, array, features = built
    meta = entry / "meta.json"
    if damage == "missing array":
        array.unlink()
    elif damage == "meta unreadable":
        meta.write_text("{not json")
    else:  # an entry written before checksums were recorded
        meta.write_text(json.dumps({k: v for k, v in json.loads(meta.read_text()).items() if k != "files"}))
    view = cache.view(backbone, dataset, "block6")
    assert str(entry) in one_warning(caplog)
    assert torch.equal(view[1]["features"]["tokens"], features)


def test_entry_overwritten_in_place_is_found_by_verify_and_rebuilt(built, backbone, dataset):
    cache, entry, array, features = built
    data = np.load(array, mmap_mode="r+")
    data[1, :4] += 0.5  # same size: the cheap check cannot see it
    data.flush()
    del data
    assert not torch.equal(cache.view(backbone, dataset, "block6")[1]["features"]["tokens"], features)
    (problem,) = cache.verify()
    assert str(entry) in problem and "tokens.npy changed since it was built" in problem
    assert not entry.exists() and cache.verify() == []
    assert torch.equal(cache.view(backbone, dataset, "block6")[1]["features"]["tokens"], features)
    assert cache.verify() == []


def test_leftovers_of_killed_builds_are_removed_but_not_a_live_builders(backbone, dataset, tmp_path, caplog,
                                                                       dead_pid):
    import socket

    root = tmp_path / "cache"
    host = socket.gethostname()
    dead = root / f".tmp-aaaa-0001@{host}@{dead_pid}"
    live = root / f".tmp-bbbb-0002@{host}@{os.getpid()}"
    old = root / ".tmp-cccc-0003"  # an older unnamed leftover (or another host's): by age
    fresh = root / ".tmp-dddd-0004"
    for folder in (dead, live, old, fresh):
        folder.mkdir(parents=True)
        (folder / "tokens.npy").write_bytes(b"partial")
    stale = time.time() - STALE_AFTER_S - 60
    for path in (old / "tokens.npy", old):
        os.utime(path, (stale, stale))
    # a hash cache's atomic write killed before its rename, and one being written now
    killed_write = root / f".files_sha256.json.x1y2z3@{host}@{dead_pid}.tmp"
    live_write = root / f".files_sha256.json.a1b2c3@{host}@{os.getpid()}.tmp"
    for path in (killed_write, live_write):
        path.write_text("{")
    FeatureCache(root, progress=False).view(backbone, dataset, "block6")
    assert sorted(p.name for p in root.glob(".tmp-*")) == sorted([live.name, fresh.name])
    assert sorted(p.name for p in root.glob(".*.tmp")) == [live_write.name]
    assert any(dead.name in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_cache_command_verify_reports_and_rebuilds(tiny_run, tmp_path, capsys):
    args = tiny_run("finetune_decoder", domains=["polyp"])
    cache_dir = tmp_path / "features"  # its own cache: the session's shared one stays intact
    cache_args = ["cache", *[a for a in args[1:] if a != "--no-report"], "--set", f"cache_dir={cache_dir}"]
    assert main(cache_args) == 0
    capsys.readouterr()
    entry = FeatureCache(cache_dir).entries()[0]
    array = entry / json.loads((entry / "meta.json").read_text())["arrays"][0]
    array = array.with_name(array.name + ".npy")
    before = array.read_bytes()
    array.write_bytes(before[:-8] + bytes(range(8)))
    assert main([*cache_args, "--verify"]) == 0
    out = capsys.readouterr().out
    assert f"{entry}: {array.name} changed since it was built (sha256 differs): removed" in out
    assert "1 damaged entry" in out
    assert array.read_bytes() == before
