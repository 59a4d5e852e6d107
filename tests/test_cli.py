"""End-to-end: the CLI on a tiny synthetic stream, and the report built from its records."""
import json
import subprocess
import sys
from pathlib import Path

from benchmark.cli import main

REPO = Path(__file__).resolve().parents[1]


def tiny_run_args(tmp: Path, methods: str) -> list:
    return ["run", "--methods", methods, "--checkpoint", "none", "--output", str(tmp / "results"),
            "--set", f"cache_dir={tmp}/features",
            "--set", f"stream_overrides.synthetic.cache_dir={tmp}/synthetic",
            "--set", "stream_overrides.synthetic.train_per_domain=3",
            "--set", "stream_overrides.synthetic.test_per_domain=2",
            "--set", "stream_overrides.domains=[polyp,shadow]",
            "--set", "hparams.epochs=1", "--no-progress"]


def test_help_is_light():
    """--help must not import torch or Avalanche (it answers at once)."""
    code = ("import sys; from benchmark.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules and 'avalanche' not in sys.modules, 'heavy import'\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "report" in out.stdout and "points" in out.stdout


def test_run_then_report_end_to_end(tmp_path, capsys):
    assert main(tiny_run_args(tmp_path, "zero_shot,finetune_decoder,joint")) == 0
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


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    assert main(["run", "--methods", "no_such_method", "--checkpoint", "none",
                 "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "no_such_method" in err and "\n" not in err
    assert main(["run", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.json"))  # nothing half-written


def test_list_shows_methods_and_backbones(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "finetune_decoder" in out and "sam_vit_b" in out and "synthetic" in out
    methods = out.split("methods:\n")[1].split("backbones:")[0].splitlines()
    assert len(methods) >= 13 and all(len(line.split(None, 2)) == 3 for line in methods)  # described
