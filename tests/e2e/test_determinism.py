"""The same seed on the same CPU gives the same record (timings, dates and git aside); loader
workers, TensorBoard and a diverged run, end to end."""
import json

import pytest

from benchmark.cli import main


def test_same_seed_same_record_other_seed_differs(tmp_path, tiny_run, comparable):
    def _record(out: str, seed: int) -> dict:
        args = tiny_run("finetune_decoder", tmp_path / out, domains=["polyp", "shadow"])
        assert main(args + ["--seeds", str(seed), "--deterministic"]) == 0
        return json.loads(next((tmp_path / out).glob("*.json")).read_text())

    first, second = _record("a", 7), _record("b", 7)
    assert comparable(first) == comparable(second)
    assert first["config"]["deterministic"] is True
    other = _record("c", 8)
    assert other["matrices"]["iou"][1:] != first["matrices"]["iou"][1:]  # the seed matters


def test_tensorboard_scalars(tmp_path, tiny_run):
    pytest.importorskip("tensorboard")
    args = tiny_run("zero_shot", tmp_path / "out", domains=["polyp"])
    assert main(args + ["--set", f"tensorboard={tmp_path}/tb"]) == 0
    events = list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0


def test_loader_workers_do_not_change_the_record(tmp_path, tiny_run, comparable):
    """num_workers only moves loading into other processes: the same record as loading inline."""
    records = []
    for workers in (0, 2):
        out = tmp_path / f"w{workers}"
        args = tiny_run("samcl", out, domains=["polyp", "shadow"])
        assert main(args + ["--set", f"num_workers={workers}"]) == 0
        records.append(json.loads(next(out.glob("*.json")).read_text()))
    assert comparable(records[0]) == comparable(records[1])
    assert [r["config"]["num_workers"] for r in records] == [0, 2]


def test_a_diverged_run_is_a_one_line_error_and_writes_no_record(tmp_path, capsys, monkeypatch, tiny_run):
    import methods.template

    real = methods.template.sam_loss
    monkeypatch.setattr(methods.template, "sam_loss", lambda *a, **k: real(*a, **k) * float("nan"))
    out = tmp_path / "out"
    assert main(tiny_run("finetune_decoder", out, domains=["polyp", "shadow"])) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "error: finetune_decoder: loss became nan on domain 0; lower the learning rate"
    assert not list(out.glob("*.json"))
