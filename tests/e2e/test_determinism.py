"""The same seed on the same CPU gives the same record (timings, dates and git aside); the same
command in two processes gives byte-identical records apart from ``timing`` and ``created``;
loader workers, TensorBoard and a diverged run, end to end."""
import json
import subprocess
import sys

import pytest
import torch

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


def test_the_same_command_in_two_processes_writes_identical_records(tmp_path, tiny_run, repo_root):
    out = tmp_path / "out"
    args = tiny_run("finetune_decoder", out, domains=["polyp"], epochs=1)
    for _ in range(2):  # the first builds the stream and the cache if needed; both write into out/
        done = subprocess.run([sys.executable, "run_benchmark.py", *args], cwd=repo_root,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
    texts = []
    for path in sorted(out.glob("*.json")):
        record = json.loads(path.read_text())
        assert set(record["fingerprint"]) >= {"weights", "data", "numerics", "code"}
        del record["timing"], record["created"]
        texts.append(json.dumps(record, indent=1))
    assert len(texts) == 2 and texts[0] == texts[1]


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


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))])
def test_prefetching_does_not_change_the_record(tmp_path, tiny_run, comparable, caplog, device):
    """prefetch only moves loading into a background thread (and on CUDA the copies onto a side
    stream): the same records as loading inline (deterministic kernels on CUDA); replay's loader
    (Avalanche's, shuffled from the global generator) is loaded inline, said once."""
    records = {}
    for depth in (0, 2):
        out = tmp_path / f"p{depth}"
        args = tiny_run("lora,replay", out, domains=["polyp", "shadow"])
        with caplog.at_level("WARNING", logger="methods.template"):
            assert main(args + ["--set", f"prefetch={depth}", "--set", "cache_dtype=bfloat16",
                                "--device", device, "--deterministic"]) == 0
        for path in out.glob("*.json"):
            record = json.loads(path.read_text())
            records[(record["method"], depth)] = record
    for method in ("lora", "replay"):
        assert comparable(records[(method, 0)]) == comparable(records[(method, 2)]), method
        assert records[(method, 2)]["config"]["prefetch"] == 2
    noted = [r.getMessage() for r in caplog.records if r.getMessage().startswith("prefetch:")]
    assert noted == ["prefetch: replay trains from a ReplayDataLoader, whose order draws from the "
                     "global random generators; it is loaded inline"]
