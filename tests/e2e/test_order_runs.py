"""Domain orders through the CLI: ``--orders N`` and a stream's explicit ``orders`` make one run
per (order, method, seed); the leaderboard pools the orders and says so; a grid of the same
stream makes the same runs (same run ids)."""
import yaml

from benchmark.cli import main
from benchmark.reporting.records import load_records


def test_orders_make_one_record_per_order_and_the_report_pools_them(tmp_path, tiny_run, capsys):
    out = tmp_path / "results"
    args = tiny_run("zero_shot,finetune_decoder", out, domains=["polyp", "shadow"], epochs=1)
    assert main(args + ["--orders", "2"]) == 0
    records = load_records(out)
    assert len(records) == 4
    for method in ("zero_shot", "finetune_decoder"):
        orders = sorted(r.domains[:r.trained] for r in records if r.method == method)
        assert orders == [["polyp", "shadow"], ["shadow", "polyp"]]
    assert len({r.extra["run_id"] for r in records}) == 4
    capsys.readouterr()
    assert main(["report", "--results", str(out), "--out", str(tmp_path / "t"),
                 "--no-heatmaps"]) == 0
    printed = capsys.readouterr().out
    assert "Orders" in printed and "over seeds and domain orders" in printed.replace("\n", " ")
    assert "2 orders of polyp, shadow" in printed.replace("\n", " ")
    csv = (tmp_path / "t" / "leaderboard.csv").read_text().splitlines()
    assert csv[0].startswith("method,backbone,stream,seeds,orders,flag")
    assert sorted(line.split(",")[0] for line in csv[1:]) == ["finetune_decoder", "zero_shot"]
    assert all(line.split(",")[3:5] == ["1", "2"] for line in csv[1:])
    assert main(["report", "--results", str(out), "--out", str(tmp_path / "t2"), "--no-heatmaps",
                 "--split-orders", "--where", "method=zero_shot"]) == 0
    split = (tmp_path / "t2" / "leaderboard.csv").read_text()
    assert "zero_shot [order=polyp→shadow]" in split and "finetune_decoder" not in split


def test_explicit_orders_of_a_stream_yaml_run_and_a_grid_finds_them(tmp_path, tiny_run, tiny_cache,
                                                                     repo_root, capsys):
    stream = yaml.safe_load((repo_root / "scenarios" / "streams" / "tiny.yaml").read_text())
    stream.update(domains=["polyp", "shadow"], orders=[["shadow", "polyp"], ["polyp", "shadow"]])
    del stream["order_seed"]
    path = tmp_path / "two_orders.yaml"
    path.write_text(yaml.safe_dump(stream))
    out = tmp_path / "results"
    args = tiny_run("zero_shot", out)
    args[args.index("--stream") + 1] = str(path)
    assert main(args) == 0
    records = load_records(out)
    assert sorted(r.domains[:2] for r in records) == [["polyp", "shadow"], ["shadow", "polyp"]]
    grid = {"methods": ["zero_shot"], "seeds": [1234], "backbones": ["sam_small"],
            "output": str(out),
            "set": {"stream": str(path), "checkpoint": None, "cache_dir": f"{tiny_cache}/features",
                    "progress": False, "hparams.epochs": 2, "hparams.batch_size": 2,
                    "stream_overrides.synthetic.cache_dir": f"{tiny_cache}/synthetic"}}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    capsys.readouterr()
    assert main(["grid", "--config", str(tmp_path / "grid.yaml"), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "2 run(s), 0 to do" in printed and "order=shadow→polyp" in printed
