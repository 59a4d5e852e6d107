"""The grid command's SLURM submission (benchmark/cli/grid.py)."""
import importlib.util

import pytest

from benchmark.cli import main


@pytest.mark.skipif(importlib.util.find_spec("submitit") is not None, reason="submitit installed")
def test_slurm_without_submitit_is_a_clear_error(tmp_path, capsys, tiny_grid):
    path = tiny_grid(tmp_path, tmp_path / "out", seeds=[1], order_seeds=[None])
    assert main(["grid", "--config", str(path), "--slurm"]) == 2
    assert "pip install submitit" in capsys.readouterr().err
