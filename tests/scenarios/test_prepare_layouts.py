"""prepare on a tiny fake of each official download (official folder and file names, with the pitfalls
of docs: JPEG/grey masks, superpixels and CSVs, NonCAM, size mismatches, empty and truncated files)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scenarios.prepare import DATASETS, prepare

W, H = 32, 24


# ------------------------------------------------------------------ fake files
def image(path: Path, seed: int = 0, size=(W, H)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def mask(path: Path, value: int = 255, size=(W, H), rgb: bool = False, strays=(), empty=False) -> Path:
    """A box of `value` on 0; `strays` are extra grey values written into the background."""
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((size[1], size[0]), np.uint8)
    if not empty:
        m[4:14, 6:20] = value
    for i, v in enumerate(strays):
        m[size[1] - 1, i] = v
    im = Image.fromarray(m)
    (im.convert("RGB") if rgb else im).save(path)
    return path


def truncated(path: Path, seed: int = 0) -> Path:
    image(path, seed)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def check_out(out: Path, counts: dict) -> dict:
    """OUT has exactly `counts` pairs per split, strict 0/255 L PNG masks of the image's size named
    <stem>.png, points.json keyed by every mask; returns the manifest."""
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"] == counts
    assert sorted(p.name for p in out.iterdir()) == sorted([*counts, "manifest.json"])
    for split, n in counts.items():
        images = sorted((out / split / "images").iterdir())
        masks = sorted(p for p in (out / split / "masks").iterdir() if p.name != "points.json")
        assert len(images) == len(masks) == n
        assert [p.stem for p in images] == [p.stem for p in masks]
        points = json.loads((out / split / "masks" / "points.json").read_text())
        assert sorted(points) == [p.name for p in masks]
        for img, m in zip(images, masks):
            with Image.open(m) as mm, Image.open(img) as ii:
                assert mm.format == "PNG" and mm.mode == "L" and mm.size == ii.size
                assert set(np.unique(np.asarray(mm)).tolist()) == {0, 255}
    return manifest


def reasons(manifest: dict) -> dict:
    """file name -> drop reason."""
    return {Path(d["file"]).name: d["reason"] for d in manifest["dropped"]}


def run(dataset, source, out, **kw) -> dict:
    return prepare(dataset, source, out, progress=False, **kw)


# ------------------------------------------------------------------ per dataset
def test_kvasir_seg(tmp_path):
    root = tmp_path / "Kvasir-SEG"
    names = ["cju0qkwl35piu0993l0dewei2", "cju0qoxqj9q6s0835b43399p4", "cju0s2a9ekvms080138tjjpxr",
             "cju0s690hkp960855tjuaqvv0"]
    for i, n in enumerate(names):
        image(root / "images" / f"{n}.jpg", i)
        mask(root / "masks" / f"{n}.jpg", value=250, rgb=True)  # JPEG RGB, grey values
    (root / "kavsir_bboxes.json").write_text("{}")
    truncated(root / "images" / "cju0sr5ghl0nd08789uzf1raf.jpg")
    mask(root / "masks" / "cju0sr5ghl0nd08789uzf1raf.jpg", rgb=True)
    image(root / "images" / "cju0sxqiclckk08551ycbwhno.jpg")
    mask(root / "masks" / "cju0sxqiclckk08551ycbwhno.jpg", empty=True)
    lists = tmp_path / "lists.json"
    lists.write_text(json.dumps({"train": names[:2] + ["cju0sr5ghl0nd08789uzf1raf"],
                                 "test": names[2:] + ["cju0sxqiclckk08551ycbwhno"]}))
    summary = run("kvasir-seg", tmp_path, tmp_path / "out", split_from=str(lists))
    manifest = check_out(tmp_path / "out", {"train": 2, "test": 2})
    assert summary["status"] == "written" and manifest["fingerprint"] == summary["fingerprint"]
    assert reasons(manifest) == {"cju0sr5ghl0nd08789uzf1raf.jpg": "unreadable file",
                                 "cju0sxqiclckk08551ycbwhno.jpg": "empty mask after binarisation"}
    bad = next(d for d in manifest["dropped"] if d["reason"] == "unreadable file")
    assert bad["file"] == str(root / "images" / "cju0sr5ghl0nd08789uzf1raf.jpg") and "truncated" in bad["detail"].lower()
    assert manifest["grey_masks"] >= 4 and manifest["points"] == {"reference": 0, "generated": 4,
                                                                   "none_empty_at_1024": 0}
    copied = tmp_path / "out" / "train" / "images" / f"{names[0]}.jpg"
    assert copied.read_bytes() == (root / "images" / f"{names[0]}.jpg").read_bytes()


def test_camo_split_by_image_folder_with_one_gt_folder(tmp_path):
    root = tmp_path / "CAMO-COCO-V.1.0-CVIU2019" / "Camouflage"
    for i in (1, 2, 3):
        image(root / "Images" / "Train" / f"camourflage_{i:05d}.jpg", i)
    for i in (12, 18):
        image(root / "Images" / "Test" / f"camourflage_{i:05d}.jpg", i)
    for i in (1, 2, 12, 18, 99):
        mask(root / "GT" / f"camourflage_{i:05d}.png")
    mask(root / "GT" / "camourflage_00003.png", size=(W + 2, H))  # size mismatch
    image(tmp_path / "CAMO-COCO-V.1.0-CVIU2019" / "Non-Camouflage" / "Images" / "Train" / "COCO_1.jpg")
    manifest = run("camo", tmp_path, tmp_path / "out")
    check_out(tmp_path / "out", {"train": 2, "test": 2})
    assert reasons(manifest) == {"camourflage_00003.jpg": "image/mask size mismatch",
                                 "camourflage_00099.png": "mask without an image"}
    summary = run("camo", tmp_path, tmp_path / "resized", resize_masks=True)
    check_out(tmp_path / "resized", {"train": 3, "test": 2})
    assert summary["resized_masks"] == 1


def test_istd_uses_a_and_b_folders(tmp_path):
    root = tmp_path / "ISTD_Dataset"
    for split, names in (("train", ["1-1", "1-2", "89-3"]), ("test", ["90-1", "135-2"])):
        for n in names:
            image(root / split / f"{split}_A" / f"{n}.png")
            mask(root / split / f"{split}_B" / f"{n}.png", value=254, strays=(59, 90))
            image(root / split / f"{split}_C" / f"{n}.png", 5)
    image(root / "test" / "test_A" / "100-1.png")  # no B
    manifest = run("istd", root, tmp_path / "out")
    check_out(tmp_path / "out", {"train": 3, "test": 2})
    assert reasons(manifest) == {"100-1.png": "no mask with the same stem"}
    assert manifest["grey_masks"] == 5
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "test" / "images").iterdir()) == ["135-2.png", "90-1.png"]
    with Image.open(out / "train" / "masks" / "1-1.png") as m:  # 254 -> 255, strays 59/90 -> 0
        assert (np.asarray(m) == 255).sum() == 10 * 14
    # the reference reading keeps only 255: 254 boxes are empty, every pair dropped
    with pytest.raises(ValueError, match="every image .* was dropped"):
        run("istd", root, tmp_path / "ref", mask_reading="reference")
    assert not (tmp_path / "ref").exists()


def _isic_pair(data: Path, truth: Path, ident: str, suffix: str = "_Segmentation") -> None:
    image(data / f"ISIC_{ident}.jpg", int(ident))
    mask(truth / f"ISIC_{ident}{suffix}.png")
    mask(data / f"ISIC_{ident}_superpixels.png", value=7)


def test_isic2016(tmp_path):
    folders = {"train": ("ISBI2016_ISIC_Part1_Training_Data", "ISBI2016_ISIC_Part1_Training_GroundTruth"),
               "test": ("ISBI2016_ISIC_Part1_Test_Data", "ISBI2016_ISIC_Part1_Test_GroundTruth")}
    for split, ids in (("train", ["0000000", "0000001"]), ("test", ["0000003"])):
        data, truth = (tmp_path / f for f in folders[split])
        for ident in ids:
            _isic_pair(data, truth, ident)
    (tmp_path / folders["train"][0] / "ISBI2016_ISIC_Part1_Training_Data.csv").write_text("id\n")
    manifest = run("isic2016", tmp_path, tmp_path / "out")
    check_out(tmp_path / "out", {"train": 2, "test": 1})
    assert manifest["dropped_counts"] == {"ISIC superpixels file (not an image of the task)": 3,
                                          "not an image file": 1}
    assert sorted(p.name for p in (tmp_path / "out" / "test" / "masks").iterdir()) == [
        "ISIC_0000003.png", "points.json"]


def test_isic2017_three_splits_both_mask_spellings(tmp_path):
    names = {"train": ("ISIC-2017_Training_Data", "ISIC-2017_Training_Part1_GroundTruth"),
             "val": ("ISIC-2017_Validation_Data", "ISIC-2017_Validation_Part1_GroundTruth"),
             "test": ("ISIC-2017_Test_v2_Data", "ISIC-2017_Test_v2_Part1_GroundTruth")}
    for k, (split, (data, truth)) in enumerate(names.items()):
        data_dir = tmp_path / data / data if split == "val" else tmp_path / data  # X/X/ unpacked
        for j in range(2):
            _isic_pair(data_dir, tmp_path / truth, f"00{k}{j}000", "_segmentation" if j else "_Segmentation")
        (data_dir / f"{data}_metadata.csv").write_text("image_id,age\n")
    manifest = run("isic2017", tmp_path, tmp_path / "out")
    check_out(tmp_path / "out", {"train": 2, "val": 2, "test": 2})
    assert manifest["dropped_counts"] == {"ISIC superpixels file (not an image of the task)": 6,
                                          "not an image file": 3}


def test_cod10k_keeps_only_cam(tmp_path):
    root = tmp_path / "COD10K-v3"
    files = {"Train": ["COD10K-CAM-1-Aquatic-1-BatFish-1", "COD10K-CAM-1-Aquatic-1-BatFish-3",
                       "COD10K-NonCAM-5-Background-1-Airport-1"],
             "Test": ["COD10K-CAM-1-Aquatic-1-BatFish-2", "COD10K-NonCAM-5-Background-1-Airport-2"]}
    for folder, stems in files.items():
        for s in stems:
            image(root / folder / "Image" / f"{s}.jpg")
            mask(root / folder / "GT_Object" / f"{s}.png", empty="NonCAM" in s)
            mask(root / folder / "GT_Edge" / f"{s}.png")
    manifest = run("cod10k", tmp_path, tmp_path / "out")
    check_out(tmp_path / "out", {"train": 2, "test": 1})
    assert manifest["dropped_counts"] == {"COD10K NonCAM image (not camouflaged)": 2}


# ------------------------------------------------------------------ COCO
def coco_download(root: Path, ids, polygons: dict, crowd=(), size=(W, H)) -> Path:
    """val2017/<12 digits>.jpg and annotations/instances_val2017.json; polygons: id -> [polygon...]."""
    images, anns = [], []
    for i in ids:
        image(root / "val2017" / f"{i:012d}.jpg", i, size)
        images.append({"id": i, "file_name": f"{i:012d}.jpg", "width": size[0], "height": size[1]})
        for poly in polygons.get(i, []):
            xs, ys = poly[0::2], poly[1::2]
            area = float((max(xs) - min(xs)) * (max(ys) - min(ys)))
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "segmentation": [poly],
                         "area": area, "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                         "iscrowd": 0})
    for i in crowd:  # an uncompressed-RLE crowd region covering the whole image
        anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "iscrowd": 1, "area": 1e9,
                     "segmentation": {"counts": [0, size[0] * size[1]], "size": [size[1], size[0]]},
                     "bbox": [0, 0, size[0], size[1]]})
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}))
    return root


def box(x0, y0, x1, y1):
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def test_coco_one_instance_per_image(tmp_path):
    big, small = box(2, 2, 30, 22), box(20, 4, 26, 10)
    coco_download(tmp_path, [139, 285, 632, 724], {139: [small, big], 285: [big], 724: [big, small]},
                  crowd=[632, 285])
    lists = tmp_path / "lists.json"
    lists.write_text(json.dumps({"train": ["000000000724.jpg"], "test": ["000000000139", "000000000285",
                                                                         "000000000632"]}))
    manifest = run("coco", tmp_path, tmp_path / "out", split_from=str(lists))
    check_out(tmp_path / "out", {"train": 1, "test": 2})
    assert reasons(manifest) == {"000000000632.jpg": "no non-crowd COCO annotation"}
    assert manifest["coco_instance_rule"] == "largest" and manifest["coco_instances"] == {
        "000000000139": 2, "000000000285": 3, "000000000724": 4}
    with Image.open(tmp_path / "out" / "test" / "masks" / "000000000285.png") as m:
        assert (np.asarray(m) == 255).mean() > 0.5  # the instance, not the crowd region
    smallest = run("coco", tmp_path, tmp_path / "small", split_from=str(lists), coco_instance="smallest")
    assert smallest["coco_instances"] == {"000000000139": 1, "000000000285": 3, "000000000724": 5}


def test_coco_points_rule_picks_the_instance_the_points_are_in(tmp_path):
    big, small = box(2, 2, 30, 22), box(20, 4, 26, 10)
    coco_download(tmp_path, [139, 724], {139: [big, small], 724: [small, big]})
    ref = tmp_path / "ref"
    (ref / "test").mkdir(parents=True)
    inside_small = [[23 * 1024 / W, 7 * 1024 / H]] * 3  # 1024-space points inside both boxes
    outside_small = [[5 * 1024 / W, 18 * 1024 / H]] * 3  # inside the big box only
    (ref / "test" / "points.json").write_text(json.dumps({
        "000000000139.jpg": [inside_small, [1, 1, 1]], "000000000724.jpg": [outside_small, [1, 1, 1]]}))
    manifest = run("coco", tmp_path, tmp_path / "out", split_from=str(ref), points_from=str(ref))
    check_out(tmp_path / "out", {"test": 2})
    assert manifest["coco_instance_rule"] == "points"
    assert manifest["coco_instances"] == {"000000000139": 2, "000000000724": 4}  # tie -> smallest; big
    assert manifest["points"]["reference"] == 2


# ------------------------------------------------------------------ wrong SOURCE
@pytest.mark.parametrize("dataset, expected", [
    ("kvasir-seg", "Kvasir-SEG/images"), ("camo", "Images/Train"), ("istd", "train/train_A"),
    ("isic2016", "ISBI2016_ISIC_Part1_Training_Data"), ("isic2017", "ISIC-2017_Training_Data"),
    ("cod10k", "Train/Image"), ("coco", "val2017")])
def test_wrong_source_names_the_expected_layout(tmp_path, dataset, expected):
    other = tmp_path / "ISTD_Dataset" if dataset != "istd" else tmp_path / "Kvasir-SEG"
    image(other / "train" / "train_A" / "1-1.png") if dataset != "istd" else image(other / "images" / "a.jpg")
    with pytest.raises(ValueError) as err:
        run(dataset, other, tmp_path / "out", split_from=None)
    message = str(err.value)
    assert message.startswith(dataset) and expected in message and "\n" not in message
    assert not (tmp_path / "out").exists()


def test_coco_missing_annotations_file(tmp_path):
    image(tmp_path / "val2017" / "000000000139.jpg")
    with pytest.raises(ValueError, match="annotations/instances_val2017.json"):
        run("coco", tmp_path, tmp_path / "out")


def test_every_dataset_has_a_module():
    assert sorted(DATASETS) == sorted(["kvasir-seg", "camo", "istd", "isic2016", "isic2017", "cod10k", "coco"])


def test_duplicate_stems_and_unreadable_masks_are_dropped_and_named(tmp_path):
    root = tmp_path / "ISBI2016_ISIC_Part1_Training_Data"
    truth = tmp_path / "ISBI2016_ISIC_Part1_Training_GroundTruth"
    for ident in ("0000000", "0000001", "0000002", "0000004"):
        _isic_pair(root, truth, ident)
    image(root / "ISIC_0000001.png")  # a second image with the same stem
    mask(truth / "ISIC_0000002_segmentation.png")  # both mask spellings: ambiguous
    truncated(truth / "ISIC_0000004_Segmentation.png")
    (tmp_path / "ISBI2016_ISIC_Part1_Test_Data").mkdir()
    (tmp_path / "ISBI2016_ISIC_Part1_Test_GroundTruth").mkdir()
    manifest = run("isic2016", tmp_path, tmp_path / "out")
    check_out(tmp_path / "out", {"train": 1})
    dropped = {Path(d["file"]).name: (d["reason"], d.get("detail", "")) for d in manifest["dropped"]}
    assert dropped["ISIC_0000001.jpg"][0] == dropped["ISIC_0000001.png"][0] == "duplicate stem"
    assert dropped["ISIC_0000002.jpg"] == ("duplicate stem", "2 masks: ISIC_0000002_Segmentation.png, "
                                                              "ISIC_0000002_segmentation.png")
    assert dropped["ISIC_0000004_Segmentation.png"][0] == "unreadable file"
    assert any(d["file"] == str(truth / "ISIC_0000004_Segmentation.png") for d in manifest["dropped"])


def test_out_must_not_hold_the_source(tmp_path):
    image(tmp_path / "ISTD_Dataset" / "train" / "train_A" / "1-1.png")
    with pytest.raises(ValueError, match="would hold SOURCE"):
        run("istd", tmp_path / "ISTD_Dataset", tmp_path, overwrite=True)
    assert (tmp_path / "ISTD_Dataset" / "train" / "train_A" / "1-1.png").is_file()
