"""Grids of runs: enumeration, shards, skipping recorded runs, SLURM, merged leaderboards."""
import importlib.util
import shutil
from pathlib import Path

import pytest
import yaml

from benchmark.cli import main
from benchmark.grid import GridError, load_grid, parse_shard
from benchmark.leaderboard import dedup_records
from benchmark.records import load_records


def write_grid(tmp: Path, output: Path, **fields) -> Path:
    grid = {"methods": ["zero_shot"], "seeds": [1, 2], "order_seeds": [None, 5],
            "backbones": ["sam_small"], "output": str(output),
            "set": {"checkpoint": None, "cache_dir": f"{tmp}/features", "progress": False,
                    "stream_overrides.synthetic.cache_dir": f"{tmp}/synthetic",
                    "stream_overrides.synthetic.train_per_domain": 2,
                    "stream_overrides.synthetic.test_per_domain": 2,
                    "stream_overrides.domains": ["polyp", "shadow"]}}
    grid.update(fields)
    path = tmp / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


def test_runs_are_enumerated_stably_and_shards_partition_them(tmp_path):
    grid = load_grid(write_grid(tmp_path, tmp_path / "out", methods=["a", "b"],
                                backbones=["sam_small", "sam_vit_b"]))
    runs = grid.runs()
    assert len(runs) == 2 * 2 * 2 * 2 and [r.index for r in runs] == list(range(16))
    assert [(r.backbone, r.order_seed, r.method, r.seed) for r in runs[:3]] == [
        ("sam_small", None, "a", 1), ("sam_small", None, "a", 2), ("sam_small", None, "b", 1)]
    shards = [[r.index for r in runs if r.index % 3 == i] for i in range(3)]
    assert sorted(sum(shards, [])) == list(range(16))
    assert parse_shard("2/3") == (2, 3) and parse_shard(None) == (0, 1)
    for bad in ("3/3", "x", "1/0", "-1/2"):
        with pytest.raises(GridError):
            parse_shard(bad)


def test_bad_grid_files_are_clear_errors(tmp_path):
    with pytest.raises(GridError, match="unknown field"):
        load_grid(write_grid(tmp_path, tmp_path, colour="red"))
    with pytest.raises(GridError, match="seeds"):
        load_grid(write_grid(tmp_path, tmp_path, seeds=["one"]))
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_grid(tmp_path / "nope.yaml")


def test_sharded_grid_skips_recorded_runs_and_merges(tmp_path, capsys):
    path = write_grid(tmp_path, tmp_path / "out", seeds=[1], order_seeds=[None, 5])
    # Two "machines": shard 0/2 writes into out/, shard 1/2 into other/.
    assert main(["grid", "--config", str(path), "--shard", "0/2", "--no-progress"]) == 0
    assert main(["grid", "--config", str(path), "--shard", "1/2", "--no-progress",
                 "--set", f"output={tmp_path}/other"]) == 0
    a, b = load_records(tmp_path / "out"), load_records(tmp_path / "other")
    assert len(a) == 1 and len(b) == 1 and a[0].extra["run_id"] != b[0].extra["run_id"]
    capsys.readouterr()
    # Run again: everything recorded is skipped.
    assert main(["grid", "--config", str(path), "--shard", "0/2", "--dry-run"]) == 0
    assert "0 to do" in capsys.readouterr().out
    assert main(["grid", "--config", str(path), "--dry-run"]) == 0  # run 1's record is elsewhere
    assert "2 run(s), 1 to do" in capsys.readouterr().out
    # Merge: a copy of a record (the same run id) is counted once.
    shutil.copy(next((tmp_path / "out").glob("*.json")), tmp_path / "other" / "copy.json")
    merged = dedup_records(load_records([tmp_path / "out", tmp_path / "other"]))
    assert len(merged) == 2
    assert main(["report", "--results", str(tmp_path / "out"), str(tmp_path / "other"),
                 "--out", str(tmp_path / "tables"), "--no-heatmaps"]) == 0
    csv = (tmp_path / "tables" / "leaderboard.csv").read_text()
    assert "zero_shot" in csv


@pytest.mark.skipif(importlib.util.find_spec("submitit") is not None, reason="submitit installed")
def test_slurm_without_submitit_is_a_clear_error(tmp_path, capsys):
    path = write_grid(tmp_path, tmp_path / "out", seeds=[1], order_seeds=[None])
    assert main(["grid", "--config", str(path), "--slurm"]) == 2
    assert "pip install submitit" in capsys.readouterr().err
