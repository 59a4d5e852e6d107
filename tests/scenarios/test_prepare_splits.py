"""Split lists: the shipped reference lists, --split-from in its forms, the reference's exact
Kvasir-SEG 800/200 and COCO 100/100 on fake downloads holding exactly those names."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scenarios.prepare import prepare
from scenarios.prepare import lists as lists_module
from scenarios.prepare.lists import read_split_lists, shipped_split_lists

POINTS = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "samcl_points"


def points_root(name: str) -> Path:
    if not (POINTS / name / "train" / "points.json").is_file():
        pytest.skip(f"reference points not found at {POINTS / name}")
    return POINTS / name


def reference_stems(name: str) -> dict:
    return {s: sorted(Path(k).stem for k in json.loads((points_root(name) / s / "points.json").read_text()))
            for s in ("train", "test")}


def tiny_pair(images: Path, masks: Path, stem: str, mask_ext: str = "jpg") -> None:
    """An 8x6 JPEG image and a JPEG mask with a foreground box."""
    Image.fromarray(np.full((6, 8, 3), 90, np.uint8)).save(images / f"{stem}.jpg")
    m = np.zeros((6, 8), np.uint8)
    m[1:5, 2:6] = 255
    Image.fromarray(m).save(masks / f"{stem}.{mask_ext}")


def fake_kvasir(root: Path, stems) -> Path:
    images, masks = root / "Kvasir-SEG" / "images", root / "Kvasir-SEG" / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    for stem in stems:
        tiny_pair(images, masks, stem)
    return root


def split_stems(out: Path) -> dict:
    return {s.name: sorted(p.stem for p in (s / "images").iterdir()) for s in sorted(out.iterdir()) if s.is_dir()}


# ------------------------------------------------------------------ shipped lists
@pytest.mark.parametrize("dataset, name", [("kvasir-seg", "Kvasir"), ("coco", "COCO")])
def test_shipped_lists_equal_the_reference(dataset, name):
    shipped = json.loads((lists_module.SHIPPED / f"{dataset}.json").read_text())
    assert shipped == reference_stems(name)
    assert {s: sorted(v) for s, v in shipped_split_lists(dataset).items()} == reference_stems(name)


def test_only_kvasir_and_coco_ship_lists():
    assert sorted(p.name for p in lists_module.SHIPPED.iterdir()) == ["coco.json", "kvasir-seg.json"]
    assert shipped_split_lists("istd") is None


# ------------------------------------------------------------------ the reference's exact splits
def test_kvasir_split_from_reference_is_exactly_800_200(tmp_path):
    ref = reference_stems("Kvasir")
    fake_kvasir(tmp_path / "src", ref["train"] + ref["test"])
    summary = prepare("kvasir-seg", tmp_path / "src", tmp_path / "out", progress=False,
                      split_from=str(points_root("Kvasir")))
    assert summary["splits"] == {"train": 800, "test": 200} and summary["dropped"] == []
    assert split_stems(tmp_path / "out") == ref
    shipped = prepare("kvasir-seg", tmp_path / "src", tmp_path / "out2", progress=False)  # default list
    assert shipped["fingerprint"] == summary["fingerprint"]


def test_coco_split_from_reference_is_exactly_its_200_ids(tmp_path):
    ref = reference_stems("COCO")
    extra = ["000000999991", "000000999992"]  # other val2017 images: not in the lists
    root = tmp_path / "src"
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, anns = [], []
    for stem in ref["train"] + ref["test"] + extra:
        Image.fromarray(np.full((6, 8, 3), 90, np.uint8)).save(root / "val2017" / f"{stem}.jpg")
        images.append({"id": int(stem), "file_name": f"{stem}.jpg", "width": 8, "height": 6})
        anns.append({"id": len(anns) + 1, "image_id": int(stem), "category_id": 1, "iscrowd": 0,
                     "segmentation": [[1, 1, 6, 1, 6, 5, 1, 5]], "area": 20.0, "bbox": [1, 1, 5, 4]})
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "x"}]}))
    summary = prepare("coco", root, tmp_path / "out", progress=False, split_from=str(points_root("COCO")))
    assert summary["splits"] == {"train": 100, "test": 100}
    assert split_stems(tmp_path / "out") == ref
    assert summary["dropped_counts"] == {"not in the split lists": 2}
    assert summary["coco_instance_rule"] == "largest" and len(summary["coco_instances"]) == 200
    assert prepare("coco", root, tmp_path / "out2", progress=False)["fingerprint"] == summary["fingerprint"]


# ------------------------------------------------------------------ --split-from forms
def test_split_from_forms_match_by_stem(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"train": ["x.jpg", "y"], "test": ["z.png", "1.2.3"]}))
    txt = tmp_path / "txt"
    txt.mkdir()
    (txt / "train.txt").write_text("x.jpg\ny\n")
    (txt / "test.txt").write_text("z.png\n1.2.3\n")
    want = {"train": {"x", "y"}, "test": {"z", "1.2.3"}}
    assert read_split_lists(tmp_path / "a.json") == want
    assert read_split_lists(txt) == want
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train.json").write_text(json.dumps(["x", "y.jpeg"]))
    (lists / "test.json").write_text(json.dumps(["z", "1.2.3"]))
    assert read_split_lists(lists) == want


def test_bad_split_lists_are_errors(tmp_path):
    (tmp_path / "both.json").write_text(json.dumps({"train": ["x.jpg"], "test": ["x.png"]}))
    with pytest.raises(ValueError, match="'x' is in both train and test"):
        read_split_lists(tmp_path / "both.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no split lists"):
        read_split_lists(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        read_split_lists(tmp_path / "nowhere")


def test_split_from_overrides_an_official_split_and_reports_missing_names(tmp_path):
    root = tmp_path / "ISTD_Dataset"
    for split, stem in (("train", "1-1"), ("train", "1-2"), ("test", "90-1")):
        for sub in ("A", "B"):
            (root / split / f"{split}_{sub}").mkdir(parents=True, exist_ok=True)
        tiny_pair(root / split / f"{split}_A", root / split / f"{split}_B", stem, "png")
    (tmp_path / "l.json").write_text(json.dumps({"train": ["1-1"], "test": ["90-1", "1-2", "135-9"]}))
    summary = prepare("istd", root, tmp_path / "out", progress=False, split_from=str(tmp_path / "l.json"))
    assert summary["splits"] == {"train": 1, "test": 2} and summary["missing_from_source"] == ["135-9"]
    (tmp_path / "none.json").write_text(json.dumps({"train": ["nope"]}))
    with pytest.raises(ValueError, match="none of the 1 listed images is in the source"):
        prepare("istd", root, tmp_path / "out2", progress=False, split_from=str(tmp_path / "none.json"))


def test_kvasir_and_coco_need_a_list(tmp_path, monkeypatch):
    monkeypatch.setattr(lists_module, "SHIPPED", tmp_path / "no_lists")
    fake_kvasir(tmp_path / "src", ["a"])
    for dataset in ("kvasir-seg", "coco"):
        with pytest.raises(ValueError, match="--split-from"):
            prepare(dataset, tmp_path / "src", tmp_path / "out", progress=False)
