"""The worked example of docs/adding-a-method.md: examples/my_method.py, registered and run with one
command, appears in the leaderboard with a complete record; and it trains only decoder biases."""
import copy
import re
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def test_example_runs_through_the_cli_and_reaches_the_leaderboard(tmp_path):
    from benchmark.records import load_records

    out = tmp_path / "results"
    cmd = [sys.executable, "run_benchmark.py", "--method-file", "examples/my_method.py",
           "--methods", "my_method", "--checkpoint", "none", "--output", str(out),
           "--set", f"cache_dir={tmp_path}/cache",
           "--set", f"stream_overrides.synthetic.cache_dir={tmp_path}/syn",
           "--set", "stream_overrides.synthetic.train_per_domain=3",
           "--set", "stream_overrides.synthetic.test_per_domain=2",
           "--set", "stream_overrides.domains=[polyp,shadow]", "--set", "hparams.epochs=1",
           "--no-progress"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert any("AA mIoU" in line for line in lines), proc.stdout  # the leaderboard was printed
    rows = [line for line in lines if line.startswith("my_method")]
    assert rows and len(re.findall(r"\d+\.\d+", rows[0])) >= 5, proc.stdout  # with numbers
    (record,) = load_records([out])
    assert record.method == "my_method" and record.hparams["lr"] == 1e-3
    assert torch.tensor(record.matrices["iou"]).shape == (3, 3)
    assert [e["components"] for e in record.storage["entries"]][0]["decoder_biases"] > 0
    assert len(record.extra["loss_history"]) == 2


def test_example_trains_only_the_decoder_biases(tmp_path):
    from benchmark.backbones import build_backbone
    from methods.registry import get_method, import_method_module
    from scenarios.folder import FolderSegmentationDataset
    from scenarios.stream import to_avalanche
    from tiny_data import write_tiny_domain

    try:
        cls = get_method("my_method")
    except KeyError:
        import_method_module(str(REPO / "examples" / "my_method.py"))
        cls = get_method("my_method")
    torch.manual_seed(0)
    backbone = build_backbone("sam_small", checkpoint=None)
    data = FolderSegmentationDataset(write_tiny_domain(tmp_path / "d", split="train", n=4, size=48),
                                     "train", image_size=256, domain_index=0)
    s = cls(backbone=copy.deepcopy(backbone), domain_names=["d"], n_trained=1,
            hparams={"epochs": 3, "batch_size": 2}, seed=0)
    before = {n: p.detach().clone() for n, p in s.backbone.sam.named_parameters()}
    s.learn_domain(to_avalanche([data], [data]).train_stream[0], 0)
    assert s.loss_history[-1] < s.loss_history[0]
    now = dict(s.backbone.sam.named_parameters())
    moved = {n for n, v in before.items() if not torch.equal(v, now[n].detach())}
    assert moved and all(n.startswith("mask_decoder.") and n.endswith("bias") for n in moved)
    n_bias = sum(p.numel() for n, p in s.backbone.sam.mask_decoder.named_parameters() if n.endswith("bias"))
    assert s.storage() == {"decoder_biases": 4 * n_bias}
