"""Grid runs through the CLI: shards on two "machines", skipping recorded runs, merged leaderboards."""
import shutil

from benchmark.cli import main
from benchmark.reporting.leaderboard import dedup_records
from benchmark.reporting.records import load_records


def test_sharded_grid_skips_recorded_runs_and_merges(tmp_path, capsys, tiny_grid):
    # order seed 1 trains shadow before polyp (seed 5 would keep the order: the same run id)
    path = tiny_grid(tmp_path, tmp_path / "out", seeds=[1], order_seeds=[None, 1])
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
