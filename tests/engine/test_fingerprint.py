"""A run's fingerprint and run id (benchmark/engine/fingerprint.py): the parts, what enters the id
(weights' and data's content, not their paths; not code or numerics), the weights and data hash
caches, and grid skipping by the id. Resume refusals: test_resume_refusal.py."""
import json
import os
import shutil

import pytest
import torch

from benchmark.cli import main
from benchmark.engine import fingerprint as fpm
from benchmark.engine.config import load_run_config
from benchmark.engine.protocol import stream_config
from benchmark.engine.fingerprint import PARTS, differences, identify
from benchmark.reporting.records import RunRecord
from scenarios import fileio
from scenarios.stream import FILES_CACHE


def _weights(path, seed):
    """A random sam_small checkpoint (the official .pth format) at ``path``."""
    from benchmark.backbones import build_backbone, save_official_checkpoint

    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_official_checkpoint(build_backbone("sam_small", None), path)
    return path


def _folder_stream(tmp, tiny_domain, name="folders"):
    for domain, seed in (("a", 1), ("b", 2)):
        for split in ("train", "test"):
            tiny_domain(tmp / domain, split, n=3, seed=seed)
    path = tmp / f"{name}.yaml"
    path.write_text(f"name: {name}\nimage_size: 256\n"
                    f"domains: [{{name: a, root: {tmp / 'a'}}}, {{name: b, root: {tmp / 'b'}}}]\n")
    return path


def _identity(tmp_path, stream, method="finetune_decoder", seed=1, **overrides):
    cfg = load_run_config(None, {"cache_dir": str(tmp_path / "cache"), "stream": str(stream), **overrides})
    return identify(cfg, stream_config(cfg), method, seed, {"epochs": 1})


def test_parts_and_what_the_run_id_hashes(tmp_path, tiny_domain, monkeypatch):
    stream = _folder_stream(tmp_path / "data", tiny_domain)
    a = _identity(tmp_path, stream, checkpoint=str(_weights(tmp_path / "a" / "x.pth", 1)))
    assert tuple(a.fingerprint) == PARTS and len(a.run_id) == 16
    assert json.loads(json.dumps(a.fingerprint)) == a.fingerprint  # plain JSON
    assert a.fingerprint["stream"]["order"] == ["a", "b"] and "root" not in json.dumps(a.fingerprint)
    assert set(a.fingerprint["data"]) == {"a", "b"}
    assert a.fingerprint["numerics"]["threads"] == torch.get_num_threads()
    # the same file name, other content: another id, same settings
    b = _identity(tmp_path, stream, checkpoint=str(_weights(tmp_path / "b" / "x.pth", 2)))
    assert b.run_id != a.run_id and b.settings == a.settings
    assert differences(a.fingerprint, b.fingerprint) == [
        f"weights sha256 {a.fingerprint['weights'][:8]}.. (now {b.fingerprint['weights'][:8]}..)"]
    # the same content elsewhere: the same id (paths never enter it)
    shutil.copy(tmp_path / "a" / "x.pth", tmp_path / "c.pth")
    assert _identity(tmp_path, stream, checkpoint=str(tmp_path / "c.pth")).run_id == a.run_id
    # one test image (and its mask) fewer: another id, naming the domain
    for sub in ("images", "masks"):
        (tmp_path / "data" / "b" / "test" / sub / "img01.png").unlink()
    c = _identity(tmp_path, stream, checkpoint=str(tmp_path / "c.pth"))
    assert c.run_id != a.run_id and c.settings == a.settings
    changed = differences(a.fingerprint, c.fingerprint)
    assert len(changed) == 1 and changed[0].startswith(f"data b.files {a.fingerprint['data']['b']['files'][:8]}..")
    # code and numerics are recorded, not hashed into the id
    monkeypatch.setattr(fpm, "code_part", lambda: {"version": "9", "commit": "x", "dirty": True})
    monkeypatch.setattr(fpm, "numerics_part", lambda device=None: {"threads": 99})
    d = _identity(tmp_path, stream, checkpoint=str(tmp_path / "c.pth"))
    assert d.run_id == c.run_id and differences(c.fingerprint, d.fingerprint)[0].startswith("code commit")


def test_data_is_identified_by_file_content_read_once_per_version(tmp_path, tiny_domain, monkeypatch):
    """Defect: the data part hashed file names and sizes, so an image rewritten with other bytes of
    the same size kept its run id."""
    stream = _folder_stream(tmp_path / "data", tiny_domain)
    calls = []
    real = fileio.sha256_file
    monkeypatch.setattr(fileio, "sha256_file", lambda p: calls.append(p) or real(p))
    a = _identity(tmp_path, stream, checkpoint=None, progress=False)
    assert len(calls) == 2 * 2 * 7  # domains a, b; train, test; 3 images, 3 masks, points.json
    assert (tmp_path / "cache" / FILES_CACHE).is_file()
    assert _identity(tmp_path, stream, checkpoint=None, progress=False).run_id == a.run_id
    assert len(calls) == 28  # every digest from the cache: nothing read again
    image = tmp_path / "data" / "b" / "test" / "images" / "img01.png"
    before = image.stat()
    os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))  # touched, bytes unchanged
    assert _identity(tmp_path, stream, checkpoint=None, progress=False).run_id == a.run_id
    assert calls[28:] == [os.path.realpath(image)]  # read again, same digest
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0xFF  # other bytes, same size
    image.write_bytes(bytes(data))
    os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns + 2 * 10**9))
    assert image.stat().st_size == before.st_size
    b = _identity(tmp_path, stream, checkpoint=None, progress=False)
    assert b.run_id != a.run_id and b.settings == a.settings
    (changed,) = differences(a.fingerprint, b.fingerprint)
    assert changed.startswith(f"data b.files {a.fingerprint['data']['b']['files'][:8]}..")


def test_a_damaged_files_cache_is_rebuilt_with_a_warning(tmp_path, tiny_domain, caplog):
    stream = _folder_stream(tmp_path / "data", tiny_domain)
    a = _identity(tmp_path, stream, checkpoint=None, progress=False)
    cache = tmp_path / "cache" / FILES_CACHE
    for damage in ("{\"/x\": [1", "[]"):
        cache.write_text(damage)
        caplog.clear()
        assert _identity(tmp_path, stream, checkpoint=None, progress=False).run_id == a.run_id
        assert f"{cache}: unreadable hash cache" in caplog.text
        assert len(json.loads(cache.read_text())) == 28  # rebuilt


def test_settings_and_precision_options_change_the_id(tmp_path, tiny_cache):
    def tiny(**overrides):
        return _identity(tmp_path, "tiny", checkpoint=None,
                         **{"stream_overrides.synthetic.cache_dir": f"{tiny_cache}/synthetic", **overrides})

    base = tiny()
    assert base.fingerprint["weights"] is None and base.fingerprint["data"]["polyp"]["generator"]["seed"] == 0
    assert tiny().run_id == base.run_id
    assert tiny(seed=2).run_id != base.run_id and tiny(method="lora").run_id != base.run_id
    other = tiny(channels_last=True)
    assert other.run_id != base.run_id
    assert differences(base.fingerprint, other.fingerprint) == ["precision channels_last false (now true)"]


def test_weights_are_hashed_once_per_file_version(tmp_path, monkeypatch):
    path = _weights(tmp_path / "x.pth", 1)
    calls = []
    real = fileio.sha256_file
    monkeypatch.setattr(fileio, "sha256_file", lambda p: calls.append(p) or real(p))
    first = fpm.weights_sha256("sam_small", str(path), tmp_path / "cache")
    assert fpm.weights_sha256("sam_small", str(path), tmp_path / "cache") == first and len(calls) == 1
    assert (tmp_path / "cache" / fpm.WEIGHTS_CACHE).is_file()
    _weights(path, 2)  # rewritten in place: size or mtime change, so it is hashed again
    assert fpm.weights_sha256("sam_small", str(path), tmp_path / "cache") != first and len(calls) == 2
    assert fpm.weights_sha256("sam_small", None, tmp_path / "cache") is None


def test_old_records_load_with_an_empty_fingerprint():
    data = {"method": "m", "backbone": "b", "seed": 1, "stream": {"name": "s", "domains": ["a"], "trained": 1},
            "matrices": {"iou": [[0.1], [0.2]]}}
    assert RunRecord.from_dict(data).fingerprint == {}


def test_grid_reruns_a_recorded_run_whose_weights_changed(tmp_path, capsys, tiny_grid):
    """Defect: the run id kept only the checkpoint's file name, so the grid skipped the run."""
    import yaml

    weights = _weights(tmp_path / "w" / "x.pth", 1)
    path = tiny_grid(tmp_path, tmp_path / "out", seeds=[1], order_seeds=[None])
    grid = yaml.safe_load(path.read_text())
    grid["set"]["checkpoint"] = str(weights)
    path.write_text(yaml.safe_dump(grid))
    assert main(["grid", "--config", str(path), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["grid", "--config", str(path), "--dry-run"]) == 0
    assert "1 run(s), 0 to do" in capsys.readouterr().out
    _weights(weights, 2)
    assert main(["grid", "--config", str(path), "--dry-run"]) == 0
    assert "1 run(s), 1 to do" in capsys.readouterr().out
