"""The worked example of docs/adding-a-method.md: examples/my_method.py, registered and run with one
command, appears in the leaderboard with a complete record (what it trains:
methods/test_example_method.py)."""
import re
import subprocess
import sys

import torch


def test_example_runs_through_the_cli_and_reaches_the_leaderboard(tmp_path, tiny_run, repo_root):
    from benchmark.reporting.records import load_records

    out = tmp_path / "results"
    args = tiny_run("my_method", out, domains=["polyp", "shadow"], epochs=1, batch_size=None, report=True)
    assert args[0] == "run"  # left out below: options alone run the default command
    cmd = [sys.executable, "run_benchmark.py", "--method-file", "examples/my_method.py", *args[1:]]
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=600)
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
