"""`run_benchmark.py prepare`: the summary on success; wrong SOURCE and bad options are one-line
errors (exit 2) that name what was expected, and leave no OUT behind."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.cli import main


def fake_istd(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, stems in (("train", ["1-1", "2-1"]), ("test", ["90-1"])):
        for stem in stems:
            for sub in ("A", "B"):
                (root / split / f"{split}_{sub}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(
                root / split / f"{split}_A" / f"{stem}.png")
            m = np.zeros((12, 16), np.uint8)
            m[2:8, 3:12] = 255
            m[0, 0] = 90  # a stray value
            Image.fromarray(m).save(root / split / f"{split}_B" / f"{stem}.png")
    return root


def test_prepare_prints_the_summary(tmp_path, capsys):
    src = fake_istd(tmp_path / "ISTD_Dataset")
    assert main(["prepare", "istd", str(tmp_path), str(tmp_path / "out"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "prepare istd:" in out and "(written)" in out and "splits: train 2, test 1" in out
    assert "masks with grey values (not 0/255, binarised): 3" in out and "fingerprint:" in out
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["fingerprint"] in out and src.is_dir()
    assert main(["prepare", "istd", str(tmp_path), str(tmp_path / "out"), "--no-progress"]) == 0
    assert "(unchanged)" in capsys.readouterr().out


def test_progress_bar_goes_to_stderr_and_can_be_disabled(tmp_path, capsys):
    fake_istd(tmp_path / "ISTD_Dataset")
    assert main(["prepare", "istd", str(tmp_path), str(tmp_path / "a")]) == 0
    assert "prepare istd" in capsys.readouterr().err
    assert main(["prepare", "istd", str(tmp_path), str(tmp_path / "b"), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("dataset, expected", [
    ("istd", "istd: no train/train_A folder under"), ("camo", "camo: no Images/Train folder"),
    ("cod10k", "cod10k: no Train/Image folder"), ("isic2016", "isic2016: no ISBI2016_ISIC_Part1_Training_Data"),
    ("isic2017", "isic2017: no ISIC-2017_Training_Data"), ("kvasir-seg", "kvasir-seg: no images folder"),
    ("coco", "coco: no val2017 folder")])
def test_wrong_source_is_a_one_line_error(tmp_path, capsys, dataset, expected):
    other = tmp_path / "other"
    if dataset == "istd":
        (other / "Kvasir-SEG" / "images").mkdir(parents=True)
    else:
        fake_istd(other / "ISTD_Dataset")
    assert main(["prepare", dataset, str(other), str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {expected}") and "expected" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["empty", "missing", "no_annotations"])
def test_empty_missing_and_incomplete_sources(tmp_path, capsys, case):
    src = tmp_path / "src"
    if case != "missing":
        src.mkdir()
    if case == "no_annotations":
        (src / "val2017").mkdir()
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(src / "val2017" / "000000000139.jpg")
    assert main(["prepare", "coco", str(src), str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert {"empty": "no val2017 folder", "missing": "source folder not found",
            "no_annotations": "annotations/instances_val2017.json"}[case] in err


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    fake_istd(tmp_path / "ISTD_Dataset")
    base = ["prepare", "istd", str(tmp_path), str(tmp_path / "out"), "--no-progress"]
    for extra, words in ((["--threshold", "0"], "threshold"), (["--coco-instance", "points"], "--points-from"),
                         (["--split-from", str(tmp_path / "nope")], "--split-from not found"),
                         (["--points-from", str(tmp_path)], "--points-from")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and words in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_different_out_needs_overwrite(tmp_path, capsys):
    fake_istd(tmp_path / "ISTD_Dataset")
    base = ["prepare", "istd", str(tmp_path), str(tmp_path / "out"), "--no-progress"]
    assert main(base) == 0
    assert main(base + ["--seed", "5"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(base + ["--seed", "5", "--overwrite"]) == 0
    assert "(replaced)" in capsys.readouterr().out
