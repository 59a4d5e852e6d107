"""Per-image results (--log-samples, --save-masks), the CSV/W&B loggers and the report's paired
bootstrap, on one tiny run of two methods."""
import csv
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmark.cli import main


@pytest.fixture(scope="module")
def logged(tmp_path_factory, tiny_cache):
    tmp = tmp_path_factory.mktemp("logged")
    args = ["run", "--stream", "tiny", "--methods", "zero_shot,finetune_decoder", "--checkpoint",
            "none", "--output", str(tmp / "results"), "--set", f"cache_dir={tiny_cache}/features",
            "--set", f"stream_overrides.synthetic.cache_dir={tiny_cache}/synthetic",
            "--set", "stream_overrides.domains=[polyp,{name: shadow, metrics: [ber]}]",
            "--set", "hparams.epochs=2", "--no-progress", "--no-report", "--jobs", "1",
            "--log-samples", "--save-masks", "1", "--csv-log", str(tmp / "csv")]
    assert main(args) == 0
    records = {}
    for path in (tmp / "results").glob("*.json"):
        records[json.loads(path.read_text())["method"]] = json.loads(path.read_text())
    return tmp, records


def test_per_image_scores_average_to_the_record(logged):
    tmp, records = logged
    rec = records["finetune_decoder"]
    frame = pd.read_csv(tmp / "results" / rec["extra"]["samples_file"])
    domains = rec["stream"]["domains"]
    assert len(frame) == (rec["stream"]["trained"] + 1) * 2 * len(domains)  # 2 test images each
    for score in ("iou", "mae", "ber"):
        means = frame.groupby(["row", "domain"])[score].mean()
        for t, row in enumerate(rec["matrices"][score]):
            for d, value in zip(domains, row):
                if value is None:  # BER: declared by shadow only
                    assert frame[(frame.row == t) & (frame.domain == d)][score].isna().all()
                elif score != "ber":  # BER sums the confusion counts, it is not a mean
                    assert means[(t, d)] == pytest.approx(value, abs=1e-6)


def test_masks_of_the_first_image_per_domain(logged):
    tmp, records = logged
    run_id = records["finetune_decoder"]["extra"]["run_id"]
    for domain in records["finetune_decoder"]["stream"]["domains"]:
        files = list((tmp / "results" / "masks" / run_id / domain).glob("*.png"))
        assert len(files) == 1
        values = set(np.unique(np.asarray(Image.open(files[0]))).tolist())
        assert values <= {0, 255}


def test_csv_log_holds_the_rows_and_losses(logged):
    tmp, records = logged
    rec = records["finetune_decoder"]
    (folder,) = [p for p in (tmp / "csv").iterdir() if p.name.startswith("finetune_decoder")]
    rows = list(csv.DictReader(open(folder / "rows.csv")))
    iou = {(int(r["row"]), r["domain"]): float(r["value"]) for r in rows if r["score"] == "iou"}
    assert iou[(2, "polyp")] == pytest.approx(rec["matrices"]["iou"][2][0])
    losses = [float(r["loss"]) for r in csv.DictReader(open(folder / "losses.csv"))]
    assert losses == pytest.approx(rec["extra"]["loss_history"])


def test_report_bootstraps_against_the_best(logged, capsys):
    tmp, _ = logged
    assert main(["report", "--results", str(tmp / "results"), "--out", str(tmp / "tables")]) == 0
    frame = pd.read_csv(tmp / "tables" / "significance.csv")
    assert set(frame["method"]) == {"zero_shot", "finetune_decoder"}
    other = frame[frame["method"] != frame["best"]].iloc[0]
    assert other["ci_low"] <= other["delta"] <= other["ci_high"]
    assert other["significant"] in ("yes", "n.s.")
    assert "Paired bootstrap" in capsys.readouterr().out


def test_wandb_offline_writes_a_run(tmp_path, tiny_run, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    assert main(tiny_run("zero_shot", domains=["polyp"]) + ["--wandb", "samcl-test"]) == 0
    runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0
