"""Grids of runs (benchmark/engine/grid.py): enumeration, shards, bad grid files. Grid runs:
e2e/test_grid_runs.py; the grid command's SLURM submission: cli/test_grid_command.py."""
import pytest

from benchmark.engine.grid import GridError, load_grid, parse_shard


def test_runs_are_enumerated_stably_and_shards_partition_them(tmp_path, tiny_grid):
    grid = load_grid(tiny_grid(tmp_path, tmp_path / "out", methods=["a", "b"],
                                backbones=["sam_small", "sam_vit_b"]))
    runs = grid.runs()
    assert len(runs) == 2 * 2 * 2 * 2 and [r.index for r in runs] == list(range(16))
    assert [(r.backbone, r.order, r.method, r.seed) for r in runs[:3]] == [
        ("sam_small", {"order_seed": None}, "a", 1), ("sam_small", {"order_seed": None}, "a", 2),
        ("sam_small", {"order_seed": None}, "b", 1)]
    shards = [[r.index for r in runs if r.index % 3 == i] for i in range(3)]
    assert sorted(sum(shards, [])) == list(range(16))
    assert parse_shard("2/3") == (2, 3) and parse_shard(None) == (0, 1)
    for bad in ("3/3", "x", "1/0", "-1/2"):
        with pytest.raises(GridError):
            parse_shard(bad)


def test_bad_grid_files_are_clear_errors(tmp_path, tiny_grid):
    with pytest.raises(GridError, match="unknown field"):
        load_grid(tiny_grid(tmp_path, tmp_path, colour="red"))
    with pytest.raises(GridError, match="seeds"):
        load_grid(tiny_grid(tmp_path, tmp_path, seeds=["one"]))
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_grid(tmp_path / "nope.yaml")
