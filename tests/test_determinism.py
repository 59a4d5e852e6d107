"""The same seed on the same CPU gives the same record (timings, dates and git aside)."""
import json
from pathlib import Path

from benchmark.cli import main
from test_resume import comparable, tiny_run_args


def _record(tmp: Path, out: str, seed: int) -> dict:
    args = tiny_run_args(tmp, "finetune_decoder", tmp / out, domains="[polyp,shadow]")
    assert main(args + ["--seeds", str(seed), "--deterministic"]) == 0
    return json.loads(next((tmp / out).glob("*.json")).read_text())


def test_same_seed_same_record_other_seed_differs(tmp_path):
    first, second = _record(tmp_path, "a", 7), _record(tmp_path, "b", 7)
    assert comparable(first) == comparable(second)
    assert first["config"]["deterministic"] is True
    other = _record(tmp_path, "c", 8)
    assert other["matrices"]["iou"][1:] != first["matrices"]["iou"][1:]  # the seed matters


def test_tensorboard_scalars(tmp_path):
    import pytest

    pytest.importorskip("tensorboard")
    args = tiny_run_args(tmp_path, "zero_shot", tmp_path / "out", domains="[polyp]")
    assert main(args + ["--set", f"tensorboard={tmp_path}/tb"]) == 0
    events = list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0


def test_bad_scale_out_fields_are_one_line_errors(tmp_path, capsys):
    for bad in ("precision=fp16", "channels_last=maybe", "resume=2", "num_workers=-1"):
        assert main(tiny_run_args(tmp_path, "zero_shot", tmp_path / "out") + ["--set", bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and bad.split("=")[0] in err


def test_loader_workers_do_not_change_the_record(tmp_path):
    """num_workers only moves loading into other processes: the same record as loading inline."""
    records = []
    for workers in (0, 2):
        out = tmp_path / f"w{workers}"
        args = tiny_run_args(tmp_path, "samcl", out, domains="[polyp,shadow]")
        assert main(args + ["--set", f"num_workers={workers}"]) == 0
        records.append(json.loads(next(out.glob("*.json")).read_text()))
    assert comparable(records[0]) == comparable(records[1])
    assert [r["config"]["num_workers"] for r in records] == [0, 2]


def test_a_diverged_run_is_a_one_line_error_and_writes_no_record(tmp_path, capsys, monkeypatch):
    import methods.template

    real = methods.template.sam_loss
    monkeypatch.setattr(methods.template, "sam_loss", lambda *a, **k: real(*a, **k) * float("nan"))
    out = tmp_path / "out"
    assert main(tiny_run_args(tmp_path, "finetune_decoder", out, domains="[polyp,shadow]")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "error: finetune_decoder: loss became nan on domain 0; lower the learning rate"
    assert not list(out.glob("*.json"))
