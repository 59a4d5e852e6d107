"""Leaderboard: mean ± std over seeds, the four table formats, heatmaps, report_main."""
import math

import numpy as np
import pandas as pd
import pytest

from benchmark.core.storage import StorageLedger
from benchmark.reporting.columns import Column
from benchmark.reporting.leaderboard import (display_frame, leaderboard_frame, mean_matrix,
                                             per_domain_frame, plot_matrix, render_terminal,
                                             report_main, write_heatmaps, write_tables)
from benchmark.reporting.records import RunRecord, write_record

STREAM = {"name": "synthetic", "domains": ["a", "b", "coco"], "trained": 2, "eval_only": ["coco"]}
# the column SAMCL contributes (methods/samcl/strategy.py: report_columns); its value is in extra
SELECTOR = Column("selector_accuracy", "Selector acc.", "higher", 100, 2)


def record(method, seed, iou, storage_bytes, train, extra=None, columns=()):
    ledger = StorageLedger()
    ledger.record("a", {"params": storage_bytes // 2})
    ledger.record("b", {"params": storage_bytes})
    iou = np.array(iou)
    return RunRecord(method=method, backbone="sam_small", stream=STREAM, seed=seed,
                     matrices={"iou": iou, "dice": iou, "mae": 1 - iou},
                     storage=ledger.to_dict(), timing={"train": train}, extra=extra or {},
                     columns=[c.to_dict() for c in columns])


@pytest.fixture
def records():
    return [
        # AA 0.5, FM ((0.7 - 0.5) + 0) / 2 = 0.1, BWT -0.2
        record("finetune_decoder", 0, [[0.4, 0.3, 0.6], [0.7, 0.35, 0.55], [0.5, 0.5, 0.5]],
               2 ** 20, [1.0, 2.0]),
        # AA 0.7, FM ((0.8 - 0.6) + 0) / 2 = 0.1, BWT -0.2
        record("finetune_decoder", 1, [[0.4, 0.3, 0.6], [0.8, 0.45, 0.55], [0.6, 0.8, 0.5]],
               2 ** 20, [2.0, 2.0]),
        # AA 0.9, FM 0
        record("samcl", 0, [[0.4, 0.3, 0.6], [0.9, 0.3, 0.6], [0.9, 0.9, 0.6]],
               3 * 2 ** 19, [1.0, 1.0], extra={"selector_accuracy": 0.95}, columns=[SELECTOR]),
    ]


def test_mean_std_over_two_seeds(records):
    frame = leaderboard_frame(records)
    assert list(frame["method"]) == ["samcl", "finetune_decoder"]      # sorted by AA
    fd = frame.iloc[1]
    assert fd["seeds"] == 2
    assert fd["AA_iou_mean"] == pytest.approx(0.6)
    assert fd["AA_iou_std"] == pytest.approx(math.sqrt(0.02))          # sample std of 0.5, 0.7
    assert fd["FM_samcl_iou_mean"] == pytest.approx(0.1)
    assert fd["BWT_iou_mean"] == pytest.approx(-0.2)
    assert fd["train_time_s_mean"] == pytest.approx(3.5)
    assert fd["train_time_s_std"] == pytest.approx(math.sqrt(0.5))
    assert fd["storage_mb_mean"] == pytest.approx(1.0)
    assert frame.iloc[0]["storage_mb_mean"] == pytest.approx(1.5)
    disp = display_frame(frame)
    assert disp.loc[1, "AA mIoU ↑"] == "60.00 ± 14.14"
    assert disp.loc[1, "FM (SAMCL) ↓"] == "10.00 ± 0.00"
    assert disp.loc[0, "AA mIoU ↑"] == "90.00"                         # one seed: no ±
    assert disp.loc[1, "Train time (s) ↓"] == "3.5 ± 0.7"
    assert disp.loc[1, "Seeds"] == 2
    for col in ("Method", "Backbone", "BWT ↑", "Forgetting ↓", "FWT ↑", "FT (SAMCL) ↑",
                "Zero-shot mIoU ↑", "Eval-only mIoU ↑", "AA Dice ↑", "AA MAE ↓", "Storage MB ↓"):
        assert col in disp.columns
    assert "Stream" not in disp.columns                               # only one stream
    # selector accuracy appears only when some record has it
    assert disp.loc[0, "Selector acc. ↑"] == "95.00"
    assert disp.loc[1, "Selector acc. ↑"] == "–"
    assert "Selector acc. ↑" not in display_frame(leaderboard_frame(records[:2])).columns


def test_write_all_formats(records, tmp_path):
    written = write_tables(records, tmp_path / "tables")
    for fmt in ("terminal", "markdown", "csv", "latex", "per_domain_markdown", "per_domain_csv"):
        assert written[fmt].is_file() and written[fmt].stat().st_size > 0, fmt
    md = written["markdown"].read_text()
    assert "| AA mIoU ↑" in md and "60.00 ± 14.14" in md and "×100" in md
    tex = written["latex"].read_text()
    assert r"\toprule" in tex and r"$\pm$" in tex and r"finetune\_decoder" in tex
    assert r"$\uparrow$" in tex and "±" not in tex
    csv = pd.read_csv(written["csv"])
    row = csv[csv["method"] == "finetune_decoder"].iloc[0]
    assert row["AA mIoU ↑ mean"] == pytest.approx(60.0)
    assert row["AA mIoU ↑ std"] == pytest.approx(100 * math.sqrt(0.02))
    assert "samcl" in written["terminal"].read_text()
    with pytest.raises(ValueError, match="unknown table format"):
        write_tables(records, tmp_path, formats=["html"])


def test_per_domain(records):
    frame = per_domain_frame(records)
    assert list(frame.columns) == ["method", "backbone", "stream", "a", "b", "coco (eval)"]
    fd = frame[frame["method"] == "finetune_decoder"].iloc[0]
    assert fd["a"] == pytest.approx(55.0) and fd["b"] == pytest.approx(65.0)
    assert fd["coco (eval)"] == pytest.approx(50.0)


def test_heatmaps(records, tmp_path):
    path = plot_matrix(records[0], "iou", tmp_path / "one.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    view = mean_matrix(records[:2])
    np.testing.assert_allclose(view.matrix[2], [0.55, 0.65, 0.5])
    paths = write_heatmaps(records, tmp_path / "hm")
    assert sorted(p.name for p in paths) == ["finetune_decoder__sam_small__synthetic__iou.png",
                                             "samcl__sam_small__synthetic__iou.png"]
    assert all(p.is_file() for p in paths)


def test_report_main(records, tmp_path, capsys):
    results = tmp_path / "results"
    for r in records:
        write_record(r, results)
    out = tmp_path / "tables"
    assert report_main([str(results)], str(out), formats=("markdown", "csv"), heatmaps=False) == 0
    printed = capsys.readouterr().out
    assert "AA mIoU ↑" in printed and "60.00 ± 14.14" in printed and str(out) in printed
    assert (out / "leaderboard.md").is_file() and not (out / "leaderboard.tex").exists()
    assert report_main([str(tmp_path / "empty")], str(out)) == 2          # missing folder
    (tmp_path / "empty").mkdir()
    assert report_main([str(tmp_path / "empty")], str(out)) == 1          # no records
    assert render_terminal([]) == "(no run records)"


def test_bf16_runs_are_their_own_rows(records, tmp_path):
    """A bf16 record of a method is not averaged with its fp32 records as another seed."""
    bf16 = record("samcl", 1, [[0.4, 0.3, 0.6], [0.5, 0.3, 0.6], [0.5, 0.5, 0.6]], 2 ** 20, [1.0, 1.0])
    bf16.config = {"precision": "bf16"}
    frame = leaderboard_frame(records + [bf16])
    assert list(frame["method"]) == ["samcl", "finetune_decoder", "samcl [bf16]"]
    assert frame.set_index("method").loc["samcl", "seeds"] == 1
    assert frame.set_index("method").loc["samcl", "AA_iou_mean"] == pytest.approx(0.9)
    assert "samcl [bf16]" in set(per_domain_frame(records + [bf16])["method"])
    assert len(write_heatmaps(records + [bf16], tmp_path)) == 3


def test_runs_with_other_hyper_parameters_are_their_own_rows(records, tmp_path):
    """Records of one method whose hyper-parameters differ are tabled apart, tagged with the
    differing values; the same settings over two seeds stay one row."""
    for r in records:
        r.hparams = {"lr": 1e-4, "rank": 10}
    ablation = record("samcl", 0, [[0.4, 0.3, 0.6], [0.6, 0.3, 0.6], [0.6, 0.6, 0.6]], 2 ** 20, [1.0, 1.0])
    ablation.hparams = {"lr": 1e-4, "rank": 4}
    bf16 = record("samcl", 0, [[0.4, 0.3, 0.6], [0.5, 0.3, 0.6], [0.5, 0.5, 0.6]], 2 ** 20, [1.0, 1.0])
    bf16.hparams, bf16.config = {"lr": 1e-4, "rank": 4}, {"precision": "bf16"}
    frame = leaderboard_frame(records + [ablation, bf16]).set_index("method")
    assert set(frame.index) == {"finetune_decoder", "samcl [rank=10]", "samcl [rank=4]", "samcl [bf16]"}
    assert frame.loc["finetune_decoder", "seeds"] == 2
    assert frame.loc["samcl [rank=4]", "AA_iou_mean"] == pytest.approx(0.6)
    assert {p.name for p in write_heatmaps(records + [ablation], tmp_path)} == {
        "finetune_decoder__sam_small__synthetic__iou.png", "samcl-rank-10__sam_small__synthetic__iou.png",
        "samcl-rank-4__sam_small__synthetic__iou.png"}
