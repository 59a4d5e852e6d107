"""bf16 autocast and channels-last, whole runs: on CPU, and on CUDA where there is one. bf16
changes numbers slightly; channels-last changes the memory layout and so the summation order (and
on CUDA maybe the kernels): each is a separate run id (the ``precision`` part of the fingerprint). (The strategy-level checks: methods/test_template_precision.py.)

Tolerances: channels-last vs fp32 within 1e-4 IoU on CPU (same arithmetic, other summation order)
and 2e-3 on CUDA (cuDNN may pick other convolution kernels for channels-last); bf16 vs fp32 within
0.05 IoU per cell on a 2-domain run of the shipped small SAM (bf16 keeps 8 bits of mantissa)."""
import json

import numpy as np
import pytest
import torch

from benchmark.cli import main


@pytest.fixture
def run_record(tmp_path, tiny_run):
    """``run_record(out, device, *extra)``: finetune_decoder on two tiny domains with the shipped
    small SAM (meaningful masks); returns the record."""
    def run(out: str, device: str, *extra: str) -> dict:
        args = tiny_run("finetune_decoder", tmp_path / out, domains=["polyp", "shadow"], checkpoint="auto")
        assert main(args + ["--device", device, *extra]) == 0
        return json.loads(next((tmp_path / out).glob("*.json")).read_text())
    return run


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("device,layout_tolerance", [("cpu", 1e-4), pytest.param("cuda", 2e-3, marks=CUDA)])
def test_bf16_and_channels_last_records_match_fp32(run_record, device, layout_tolerance):
    fp32 = run_record("fp32", device)
    channels_last = run_record("cl", device, "--set", "channels_last=true")
    bf16 = run_record("bf16", device, "--set", "precision=bf16")
    assert fp32["device"].startswith(device)
    ref = np.array(fp32["matrices"]["iou"])
    assert np.abs(np.array(channels_last["matrices"]["iou"]) - ref).max() < layout_tolerance
    assert channels_last["extra"]["run_id"] != fp32["extra"]["run_id"]
    assert channels_last["fingerprint"]["precision"]["channels_last"] is True
    gap = np.abs(np.array(bf16["matrices"]["iou"]) - ref)
    assert 0 < gap.max() < 0.05, gap  # bf16 really ran (not bit-equal), and stays close
    assert bf16["extra"]["run_id"] != fp32["extra"]["run_id"]  # separate records
    assert bf16["config"]["precision"] == "bf16"


@pytest.mark.slow
def test_sdpa_attention_runs_match_official(tmp_path, tiny_run):
    """LoRA (blocks 7-11 run at every step, from the block-6 cache) with each attention path: the
    own run id, scores equal to float rounding, the path in the record (config and extra)."""
    records = {}
    for path in ("official", "sdpa", "folded"):
        args = tiny_run("lora", tmp_path / path, domains=["polyp"], epochs=1)
        assert main(args + ["--set", f"attention={path}"]) == 0
        records[path] = json.loads(next((tmp_path / path).glob("*.json")).read_text())
    official = records["official"]
    assert official["extra"]["attention"] == "official"
    for path in ("sdpa", "folded"):
        record = records[path]
        assert (record["config"]["attention"], record["extra"]["attention"]) == (path, path)
        assert record["extra"]["run_id"] != official["extra"]["run_id"]  # rows of their own
        gap = np.abs(np.array(record["matrices"]["iou"]) - np.array(official["matrices"]["iou"]))
        assert gap.max() < 1e-4, (path, gap)


def test_bf16_without_native_support_warns(tmp_path, monkeypatch, tiny_run):
    monkeypatch.setattr("benchmark.engine.context.native_bf16", lambda device: False)
    args = tiny_run("zero_shot", tmp_path / "out", domains=["polyp"])
    with pytest.warns(UserWarning, match="no native bf16"):
        assert main(args + ["--set", "precision=bf16"]) == 0


@pytest.mark.slow
def test_sam2_bf16_channels_last_run_at_1024(tmp_path, tiny_run):
    """SAM2.1 Hiera-T (random weights, 1024 px) trains and routes SAMCL under bf16 autocast with
    channels-last tensors: the SAM2 side of the GPU path, on whatever device there is."""
    args = tiny_run("samcl", tmp_path / "out", domains=["polyp", "shadow"])
    args += ["--backbone", "sam2.1_hiera_t", "--device", "cuda" if torch.cuda.is_available() else "cpu",
             "--set", "stream_overrides.image_size=1024", "--set", "stream_overrides.synthetic.train_per_domain=2",
             "--set", "stream_overrides.synthetic.test_per_domain=1", "--set", "hparams.epochs=1",
             "--set", "precision=bf16", "--set", "channels_last=true"]
    assert main(args) == 0
    record = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    iou = np.array(record["matrices"]["iou"], dtype=float)
    assert iou.shape == (3, 3) and np.isfinite(iou).all()
    assert record["config"]["precision"] == "bf16" and record["backbone"] == "sam2.1_hiera_t"


def _records(out) -> dict:
    return {r["method"]: r for r in (json.loads(p.read_text()) for p in out.glob("*.json"))}


@pytest.mark.parametrize("backend", ["eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_compiled_runs_match_eager_ones(tmp_path, tiny_run, monkeypatch, backend):
    """compile=true: LoRA in the blocks, SAMCL's AugModule hooks and the decoder, each run through
    Dynamo (``eager``: its capture only; ``inductor``: generated kernels, slow on a CPU); scores
    equal to float rounding, the compile seconds apart in ``timing.compile``, a run id of its own,
    and compile=false leaves the run id what it was before the option (no key in the fingerprint)."""
    import torch._dynamo

    monkeypatch.setattr("benchmark.engine.compiled.BACKEND", backend)
    records = {}
    for flag in ("false", "true"):
        args = tiny_run("lora,samcl,finetune_decoder", tmp_path / flag, domains=["polyp", "shadow"], epochs=1)
        assert main(args + ["--set", f"compile={flag}"]) == 0
        records[flag] = _records(tmp_path / flag)
    torch._dynamo.reset()
    for method, compiled in records["true"].items():
        plain = records["false"][method]
        assert "compile" not in plain["fingerprint"]["precision"] and "compile" not in plain["timing"]
        assert compiled["fingerprint"]["precision"]["compile"] is True
        assert compiled["extra"]["run_id"] != plain["extra"]["run_id"]
        assert compiled["timing"]["compile"]["train"] > 0, method  # Dynamo really ran
        assert compiled["timing"]["compile"]["compilations"] >= 2, method
        gap = np.abs(np.array(compiled["matrices"]["iou"]) - np.array(plain["matrices"]["iou"]))
        assert gap.max() < 1e-4, (method, gap)
    assert sorted(records["true"]) == ["finetune_decoder", "lora", "samcl"]
