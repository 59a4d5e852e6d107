"""Run records (benchmark/reporting/records.py): round trip, atomic write, loading broken files.
Storage accounting: core/test_storage.py."""
import json
import logging
import os
import re
from importlib import metadata

import numpy as np
import pytest
from benchmark.core.storage import StorageLedger
from benchmark.reporting import records as rec
from benchmark.reporting.records import RecordError, RunRecord, load_records, write_record
from scenarios import fileio

STREAM = {"name": "synthetic", "domains": ["a", "b", "c"], "trained": 2, "eval_only": ["c"]}


def make_record(seed=0, method="finetune_decoder", **kw) -> RunRecord:
    iou = np.array([[0.5, 0.4, 0.6], [0.8, 0.45, 0.55], [0.7, 0.9, 0.35]])
    ledger = StorageLedger()
    ledger.record("a", {"decoder": 1000})
    ledger.record("b", {"decoder": 1000, "buffer": 24})
    return RunRecord.create(method=method, backbone="sam_small", stream=STREAM, seed=seed,
                            matrices={"iou": iou, "dice": iou * 0.9, "mae": 1 - iou},
                            config={"lr": 0.005, "nested": {"x": [1, 2]}}, hparams={"lr": 0.005},
                            storage=ledger.to_dict(),
                            timing={"cache_build": 1.0, "train": [2.0, 3.0],
                                    "eval": [0.5, 0.5, 0.5], "total": 7.5},
                            extra={"note": float("nan")}, **kw)


def test_round_trip(tmp_path):
    r = make_record()
    path = write_record(r, tmp_path)
    assert re.fullmatch(r"finetune_decoder__sam_small__synthetic__seed0__[0-9a-f]{8}\.json",
                        path.name)
    assert os.listdir(tmp_path) == [path.name]          # no temporary file left over
    text = path.read_text()
    assert "NaN" not in text and "null" in text
    json.loads(text)                                    # strict JSON
    (back,) = load_records([tmp_path])
    for score in ("iou", "dice", "mae"):
        np.testing.assert_array_equal(back.matrix(score), r.matrix(score))
    assert back.extra["note"] is None   # NaN outside the score matrices reads back as None
    assert back.zero_shot["iou"] == [0.5, 0.4, 0.6]
    assert back.config == r.config and back.timing == r.timing and back.storage == r.storage
    assert back.method == r.method and back.seed == 0 and back.stream == STREAM
    # the same record writes to the same file (the name hashes the content)
    assert write_record(back, tmp_path) == path


def test_environment_filled():
    r = make_record()
    assert r.python.count(".") == 2
    assert r.packages["torch"] == metadata.version("torch")
    assert r.packages["avalanche-lib"] == metadata.version("avalanche-lib")
    assert set(rec.PACKAGES) <= set(r.packages)
    assert r.device.startswith("cpu")
    assert r.created.endswith("+00:00")
    if r.git is not None:
        assert re.fullmatch(r"[0-9a-f]{40}", r.git["commit"])
        assert isinstance(r.git["dirty"], bool)


def test_git_info_outside_checkout(tmp_path):
    assert rec.git_info(tmp_path) is None


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(fileio.os, "fsync", crash)  # the atomic write's fsync
    with pytest.raises(OSError, match="disk full"):
        write_record(make_record(), tmp_path)
    assert os.listdir(tmp_path) == []


def test_interrupted_replace_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(fileio.os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        write_record(make_record(), tmp_path)
    assert os.listdir(tmp_path) == []


def test_load_dir_with_broken_files(tmp_path, caplog):
    good = write_record(make_record(), tmp_path)
    (tmp_path / "truncated.json").write_text(good.read_text()[:200])
    data = json.loads(good.read_text())
    del data["matrices"]
    (tmp_path / "incomplete.json").write_text(json.dumps(data))
    data = json.loads(good.read_text())
    data["matrices"]["iou"] = data["matrices"]["iou"][:2]
    (tmp_path / "bad_shape.json").write_text(json.dumps(data))
    (tmp_path / "notes.txt").write_text("not a record")
    (tmp_path / ".hidden.tmp").write_text("{")
    with caplog.at_level(logging.WARNING, logger="benchmark.reporting.records"):
        loaded = load_records(tmp_path)
    assert len(loaded) == 1
    warnings = [m.getMessage() for m in caplog.records]
    assert len(warnings) == 3
    for name, reason in (("truncated.json", "not a readable JSON"),
                         ("incomplete.json", "missing field(s): matrices"),
                         ("bad_shape.json", "matrices.iou")):
        (msg,) = [w for w in warnings if name in w]
        assert reason in msg and "\n" not in msg
    with pytest.raises(RecordError, match="truncated.json|incomplete.json|bad_shape.json"):
        load_records([tmp_path], strict=True)


def test_load_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_records([tmp_path / "nope"])


def test_validation_errors():
    r = make_record()
    r.stream = dict(STREAM, trained=5)
    with pytest.raises(RecordError, match="stream.trained"):
        r.validate()
    r = make_record()
    r.matrices["iou"] = r.matrices["iou"][:2]
    with pytest.raises(RecordError, match=r"matrices.iou.*shape"):
        r.validate()
    with pytest.raises(RecordError, match="schema_version"):
        RunRecord.from_dict(dict(make_record().to_dict(), schema_version=99))


@pytest.mark.parametrize("score, cell, value, reason", [
    ("iou", (1, 0), 5.0, "outside [0, 1]"), ("dice", (0, 2), -0.1, "outside [0, 1]"),
    ("mae", (2, 1), 1.5, "outside [0, 1]"), ("iou", (2, 2), None, "missing or not finite")])
def test_out_of_range_scores_rejected_on_load(tmp_path, caplog, score, cell, value, reason):
    """A score outside [0, 1] or not finite (null) is refused with one line naming the file and
    the field, and never averaged (before: an IoU of 5.0 was accepted)."""
    data = make_record().to_dict()
    data["matrices"][score][cell[0]][cell[1]] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError) as err:
        rec.read_record(path)
    msg = str(err.value)
    assert str(path) in msg and f"matrices.{score}" in msg and reason in msg and "\n" not in msg
    assert f"R[{cell[0]}, {cell[1]}]" in msg
    with caplog.at_level(logging.WARNING, logger="benchmark.reporting.records"):
        assert load_records(tmp_path) == []


def test_records_without_fingerprint_load():
    """Records written before the fingerprint existed read back with an empty one."""
    data = make_record().to_dict()
    del data["fingerprint"]
    assert RunRecord.from_dict(data).fingerprint == {}
    with pytest.raises(RecordError, match="fingerprint"):
        RunRecord.from_dict(dict(data, fingerprint=[1]))
