"""bf16 autocast and channels-last: the code path a GPU runs (only the autocast device type
differs), exercised on CPU, and on CUDA where there is one. bf16 changes numbers slightly and is a
separate run id; channels-last changes only the memory layout and keeps the run id.

Tolerances: channels-last vs fp32 within 1e-4 IoU on CPU (same arithmetic, other summation order)
and 2e-3 on CUDA (cuDNN may pick other convolution kernels for channels-last); bf16 vs fp32 within
0.05 IoU per cell on a 2-domain run of the shipped small SAM (bf16 keeps 8 bits of mantissa)."""
import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark import runner
from benchmark.backbones import build_backbone
from benchmark.cli import main
from benchmark.feature_cache import FeatureCache
from scenarios.folder import FolderSegmentationDataset
from scenarios.stream import collate_samples, to_avalanche
from test_resume import tiny_run_args
from tiny_data import write_tiny_domain


def _strategy(tmp: Path, name: str = "finetune_decoder"):
    from methods.registry import get_method

    torch.manual_seed(0)
    backbone = build_backbone("sam_small", checkpoint=None)
    data = FolderSegmentationDataset(write_tiny_domain(tmp / "d0", split="train", n=4, size=48),
                                     "train", image_size=256, domain_index=0)
    cls = get_method(name)
    view = FeatureCache(tmp / "cache", progress=False).view(backbone, data, cls.tap)
    strategy = cls(backbone=copy.deepcopy(backbone), domain_names=["a"], n_trained=1,
                   hparams={"epochs": 1, "batch_size": 2}, seed=0)
    return strategy, view


def _dtypes_seen(module: torch.nn.Module) -> list:
    """Output dtypes of every nn.Linear under ``module``, appended as they run."""
    seen = []
    for sub in module.modules():
        if isinstance(sub, torch.nn.Linear):
            sub.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    return seen


def test_bf16_autocast_runs_training_and_prediction_in_bf16(tmp_path):
    strategy, view = _strategy(tmp_path)
    strategy.enable_precision("bf16")
    seen = _dtypes_seen(strategy.parts)
    assert len(seen) == 0 and any(True for _ in strategy.trainable_parameters())

    strategy.learn_domain(to_avalanche([view], [view]).train_stream[0], 0)
    assert seen and set(seen) == {torch.bfloat16}  # the trained decoder ran under autocast
    assert all(p.dtype == torch.float32 for p in strategy.parts.parameters())  # fp32 master weights
    assert np.isfinite(strategy.loss_history).all()

    seen.clear()
    logits = strategy.predict(collate_samples([view[0], view[1]]))
    assert set(seen) == {torch.bfloat16} and logits.dtype == torch.float32


def test_fp32_stays_fp32_and_channels_last_converts_batches(tmp_path):
    strategy, view = _strategy(tmp_path)
    strategy.enable_precision("fp32", channels_last=True)
    seen = _dtypes_seen(strategy.parts)
    batch = collate_samples([view[0], view[1]])
    four_d = [v for v in batch["features"].values() if v.dim() == 4]
    assert four_d, "the decoder tap should cache 4-D image embeddings"
    logits = strategy.predict(batch)
    assert set(seen) == {torch.float32} and logits.dtype == torch.float32
    strategy.mbatch = batch
    strategy._unpack_minibatch()  # what Avalanche calls on every training batch
    assert all(v.is_contiguous(memory_format=torch.channels_last)
               for v in strategy.mbatch["features"].values() if v.dim() == 4)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _run(tmp: Path, out: str, device: str, *extra: str) -> dict:
    args = tiny_run_args(tmp, "finetune_decoder", tmp / out, domains="[polyp,shadow]")
    args[args.index("--checkpoint") + 1] = "auto"  # the shipped small SAM: meaningful masks
    assert main(args + ["--device", device, *extra]) == 0
    return json.loads(next((tmp / out).glob("*.json")).read_text())


@pytest.mark.parametrize("device,layout_tolerance", [("cpu", 1e-4), pytest.param("cuda", 2e-3, marks=CUDA)])
def test_bf16_and_channels_last_records_match_fp32(tmp_path, device, layout_tolerance):
    fp32 = _run(tmp_path, "fp32", device)
    channels_last = _run(tmp_path, "cl", device, "--set", "channels_last=true")
    bf16 = _run(tmp_path, "bf16", device, "--set", "precision=bf16")
    assert fp32["device"].startswith(device)
    ref = np.array(fp32["matrices"]["iou"])
    assert np.abs(np.array(channels_last["matrices"]["iou"]) - ref).max() < layout_tolerance
    assert channels_last["extra"]["run_id"] == fp32["extra"]["run_id"]
    gap = np.abs(np.array(bf16["matrices"]["iou"]) - ref)
    assert 0 < gap.max() < 0.05, gap  # bf16 really ran (not bit-equal), and stays close
    assert bf16["extra"]["run_id"] != fp32["extra"]["run_id"]  # separate records
    assert bf16["config"]["precision"] == "bf16"


def test_bf16_without_native_support_warns(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "native_bf16", lambda device: False)
    args = tiny_run_args(tmp_path, "zero_shot", tmp_path / "out", domains="[polyp]")
    with pytest.warns(UserWarning, match="no native bf16"):
        assert main(args + ["--set", "precision=bf16"]) == 0


@pytest.mark.slow
def test_sam2_bf16_channels_last_run_at_1024(tmp_path):
    """SAM2.1 Hiera-T (random weights, 1024 px) trains and routes SAMCL under bf16 autocast with
    channels-last tensors: the SAM2 side of the GPU path, on whatever device there is."""
    args = tiny_run_args(tmp_path, "samcl", tmp_path / "out", domains="[polyp,shadow]")
    args += ["--backbone", "sam2.1_hiera_t", "--device", "cuda" if torch.cuda.is_available() else "cpu",
             "--set", "stream_overrides.image_size=1024", "--set", "stream_overrides.synthetic.train_per_domain=2",
             "--set", "stream_overrides.synthetic.test_per_domain=1", "--set", "hparams.epochs=1",
             "--set", "precision=bf16", "--set", "channels_last=true"]
    assert main(args) == 0
    record = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    iou = np.array(record["matrices"]["iou"], dtype=float)
    assert iou.shape == (3, 3) and np.isfinite(iou).all()
    assert record["config"]["precision"] == "bf16" and record["backbone"] == "sam2.1_hiera_t"
