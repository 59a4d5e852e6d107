"""End-to-end: the CLI on the tiny stream, and the report built from its records."""
import json

from benchmark.cli import main


def test_run_then_report_end_to_end(tmp_path, capsys, tiny_run):
    args = tiny_run("zero_shot,finetune_decoder,joint", domains=["polyp", "shadow"], epochs=1,
                    batch_size=None, report=True)
    assert main(args) == 0
    printed = capsys.readouterr().out
    for method in ("zero_shot", "finetune_decoder", "joint"):
        assert method in printed  # the leaderboard
    records = sorted((tmp_path / "results").glob("*.json"))
    assert len(records) == 3
    for path in records:
        rec = json.loads(path.read_text())
        assert rec["stream"]["domains"] == ["polyp", "shadow", "natural"]
        assert rec["stream"]["trained"] == 2
        for metric in ("iou", "dice", "mae"):
            matrix = rec["matrices"][metric]
            assert len(matrix) == 3 and all(len(row) == 3 for row in matrix)
            assert all(v is not None for row in matrix for v in row)
        assert rec["timing"]["total"] > 0 and len(rec["timing"]["train"]) == 2
        assert rec["seed"] == 1234 and rec["packages"]["torch"]
        if rec["method"] == "zero_shot":
            assert rec["matrices"]["iou"][0] == rec["matrices"]["iou"][2]  # nothing trained
        else:
            assert rec["storage"]["totals"][-1] > 0
            assert rec["matrices"]["iou"][0] != rec["matrices"]["iou"][2]
    out_dir = tmp_path / "tables"
    assert main(["report", "--results", str(tmp_path / "results"), "--out", str(out_dir)]) == 0
    for suffix in ("md", "csv", "tex", "txt"):
        assert (out_dir / f"leaderboard.{suffix}").stat().st_size > 0
    assert list((out_dir).rglob("*.png"))
