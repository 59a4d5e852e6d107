"""Data checks (scenarios/checks.py, scenarios/folder.py): bad points, size-mismatched and orphan
masks, unreadable files, empty splits and mask encodings, each a one-line error naming the file
(or, for the encodings, read as the object they mean)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.cli import main
from scenarios.checks import DataError
from scenarios.config import ConfigError, load_stream_config
from scenarios.folder import FolderSegmentationDataset
from scenarios.points import read_mask
from scenarios.prepare import prepare

SHAPE = np.zeros((40, 48), bool)
SHAPE[10:30, 12:36] = True


def write_split(root: Path, n: int = 2, split: str = "test", mask=None, points=None) -> Path:
    """``n`` random 48x40 PNG images a.png, b.png, ... with 0/255 PNG masks of SHAPE;
    ``mask(i, path)`` writes a mask instead; ``points``: a points.json mapping to write."""
    split_dir = root / split
    (split_dir / "images").mkdir(parents=True)
    (split_dir / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        stem = "abcdefgh"[i]
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(split_dir / "images" / f"{stem}.png")
        path = split_dir / "masks" / f"{stem}.png"
        if mask is None:
            Image.fromarray(SHAPE.astype(np.uint8) * 255).save(path)
        else:
            mask(i, path)
    if points is not None:
        (split_dir / "masks" / "points.json").write_text(json.dumps(points))
    return split_dir


def load(root: Path, split: str = "test", **kw) -> FolderSegmentationDataset:
    return FolderSegmentationDataset(root, split, image_size=32, domain_index=0, **kw)


# ------------------------------------------------------------------ point prompts
@pytest.mark.parametrize("point, why", [([1024, 5], "outside"), ([5000, 3], "outside"), ([-1, 10], "outside"),
                                        ([float("nan"), 10], "not finite"), ([10, float("inf")], "not finite")])
def test_points_outside_the_image_or_not_finite_are_errors_naming_the_file(tmp_path, point, why):
    good = [[20, 20], [21, 21], [22, 22]]
    write_split(tmp_path, points={"a.png": [good, [1, 1, 1]], "b.png": [[good[0], point, good[2]], [1, 1, 1]]})
    with pytest.raises(DataError, match=rf"points\.json: b\.png \(image .*b\.png\): point 1 .* {why}"):
        load(tmp_path)


def test_bad_point_labels_and_shapes_are_errors(tmp_path):
    write_split(tmp_path, n=1, points={"a.png": [[[1, 2], [3, 4], [5, 6]], [1, 1, 7]]})
    with pytest.raises(DataError, match=r"points\.json: a\.png .*label 7"):
        load(tmp_path)
    (tmp_path / "test" / "masks" / "points.json").write_text(json.dumps({"a.png": [[1, 2, 3], [1, 1, 1]]}))
    with pytest.raises(DataError, match=r"points\.json: a\.png .*shapes"):
        load(tmp_path)


# ------------------------------------------------------------------ mask/image pairing and sizes
def test_size_mismatched_mask_is_an_error_unless_resize_is_asked(tmp_path):
    def mask(i, path):
        Image.fromarray(np.kron(SHAPE, np.ones((2, 2), bool)).astype(np.uint8) * 255 if i else
                        SHAPE.astype(np.uint8) * 255).save(path)

    write_split(tmp_path, mask=mask)
    with pytest.raises(DataError, match=r"masks/b\.png: mask is 96x80, its image b\.png is 48x40"):
        load(tmp_path)
    ds = load(tmp_path, mask_size_mismatch="resize")
    assert len(ds) == 2 and ds[1]["mask"].sum() == ds[0]["mask"].sum()


def test_mask_size_mismatch_is_a_stream_option(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(f"domains: [{{name: a, root: {tmp_path}}}]\nmask_size_mismatch: resize\n")
    cfg = load_stream_config(path)
    assert cfg.mask_size_mismatch == "resize" and cfg.to_dict()["mask_size_mismatch"] == "resize"
    assert "mask_size_mismatch" not in load_stream_config(path, {"mask_size_mismatch": "error"}).to_dict()
    with pytest.raises(ConfigError, match="mask_size_mismatch must be 'error' or 'resize'"):
        load_stream_config(path, {"mask_size_mismatch": "stretch"})


def test_orphan_mask_is_an_error_naming_it(tmp_path):
    split = write_split(tmp_path)
    Image.fromarray(SHAPE.astype(np.uint8) * 255).save(split / "masks" / "zz.png")
    with pytest.raises(DataError, match=r"masks/zz\.png: mask without an image"):
        load(tmp_path)


# ------------------------------------------------------------------ unreadable files
def truncate(path: Path, keep: float = 0.6) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_truncated_image_is_an_error_naming_it(tmp_path, fmt):
    split = write_split(tmp_path)
    image = split / "images" / f"b.{fmt}"
    if fmt == "jpg":
        Image.open(split / "images" / "b.png").save(image)
        (split / "images" / "b.png").unlink()
    truncate(image)
    with pytest.raises(DataError, match=rf"images/b\.{fmt}: cannot read image \(.*\)$"):
        load(tmp_path)


def test_png_image_with_overwritten_bytes_is_an_error(tmp_path):
    split = write_split(tmp_path)
    data = bytearray((split / "images" / "a.png").read_bytes())
    data[len(data) // 2:len(data) // 2 + 8] = b"\x00" * 8
    (split / "images" / "a.png").write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"images/a\.png: cannot read image .*(checksum|broken)"):
        load(tmp_path)


def test_truncated_mask_is_an_error_naming_it(tmp_path):
    split = write_split(tmp_path)
    truncate(split / "masks" / "a.png", 0.5)
    with pytest.raises(DataError, match=r"masks/a\.png: cannot read mask"):
        load(tmp_path)


def test_image_damaged_after_loading_is_a_one_line_error(tmp_path):
    split = write_split(tmp_path)
    ds = load(tmp_path)
    truncate(split / "images" / "a.png", 0.5)
    with pytest.raises(DataError, match=r"images/a\.png: cannot read image"):
        ds[0]


# ------------------------------------------------------------------ empty splits
def test_empty_split_is_an_error(tmp_path):
    split = write_split(tmp_path, n=0)
    with pytest.raises(DataError, match=r"test: no usable image \(0 image"):
        load(tmp_path)
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(split / "images" / "a.png")
    Image.fromarray(np.zeros((40, 48), np.uint8)).save(split / "masks" / "a.png")
    with pytest.raises(DataError, match=r"no usable image \(1 image\(s\), 1 with a mask empty at 32 px\)"):
        load(tmp_path)


def test_run_with_an_empty_test_split_stops_before_training(tmp_path, capsys):
    write_split(tmp_path / "dom", split="train")
    write_split(tmp_path / "dom", n=0)
    stream = tmp_path / "s.yaml"
    stream.write_text(f"domains: [{{name: d, root: {tmp_path / 'dom'}}}]\nimage_size: 32\n")
    rc = main(["run", "--stream", str(stream), "--methods", "zero_shot", "--checkpoint", "none",
               "--output", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "dom/test: no usable image" in err
    assert not list((tmp_path / "out").rglob("*.json"))


# ------------------------------------------------------------------ mask encodings
def _save(array: np.ndarray, path: Path, mode: str | None = None, palette=None) -> None:
    im = Image.fromarray(array, mode) if mode else Image.fromarray(array)
    if palette is not None:
        im.putpalette(palette)
    im.save(path)


ENCODINGS = {
    "uint8 0/1": lambda p: _save(SHAPE.astype(np.uint8), p),
    "16-bit 0/1": lambda p: _save(SHAPE.astype(np.uint16), p),
    "16-bit 0/65535": lambda p: _save(SHAPE.astype(np.uint16) * 65535, p),
    "palette index 1": lambda p: _save(SHAPE.astype(np.uint8), p, "P", [0, 0, 0, 255, 0, 0]),
    "grey palette": lambda p: _save(SHAPE.astype(np.uint8) * 2, p, "P", [0, 0, 0, 9, 9, 9, 255, 255, 255]),
    "alpha-only LA": lambda p: _save(np.stack([np.zeros_like(SHAPE, np.uint8), SHAPE * np.uint8(255)], -1), p, "LA"),
    "alpha-only RGBA": lambda p: _save(np.dstack([np.full((*SHAPE.shape, 3), 255, np.uint8),
                                                  SHAPE * np.uint8(255)]), p, "RGBA"),
    "1-bit": lambda p: Image.fromarray(SHAPE).convert("1").save(p),
}


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("reading", ["threshold", "reference"])
def test_mask_encodings_read_as_the_object(tmp_path, encoding, reading):
    ENCODINGS[encoding](tmp_path / "m.png")
    Image.fromarray(SHAPE.astype(np.uint8) * 255).save(tmp_path / "ref.png")
    assert np.array_equal(read_mask(tmp_path / "m.png", 32, reading), read_mask(tmp_path / "ref.png", 32, reading))
    assert read_mask(tmp_path / "m.png", 32, reading).any()


def test_dataset_reads_01_masks_instead_of_dropping_them(tmp_path):
    write_split(tmp_path, mask=lambda i, p: ENCODINGS["uint8 0/1"](p))
    ds = load(tmp_path)
    assert len(ds) == 2 and ds[0]["mask"].sum() > 0


@pytest.mark.parametrize("write, reason", [
    (lambda p: _save((SHAPE * np.uint16(3000)), p), "16-bit mask with values up to 3000"),
    (lambda p: _save(np.where(np.eye(40, 48) > 0, 2, SHAPE).astype(np.uint8), p, "P",
                     [0, 0, 0, 255, 0, 0, 0, 255, 0]), "palette mask with 3 colour indices"),
    (lambda p: _save(SHAPE.astype(np.float32), p, "F"), "mask stored as floating point"),
])
def test_ambiguous_mask_encodings_are_refused_with_the_reason(tmp_path, write, reason):
    path = tmp_path / ("m.tif" if "floating" in reason else "m.png")
    write(path)
    with pytest.raises(DataError, match=rf"m\.(png|tif): {reason}"):
        read_mask(path, 32)


def test_jpeg_masks_keep_their_grey_reading(tmp_path):
    # a JPEG is lossy: its low grey values are noise, never a 0/1 encoding
    Image.fromarray(SHAPE.astype(np.uint8)).save(tmp_path / "m.jpg", quality=100)
    assert not read_mask(tmp_path / "m.jpg", 32).any()


# ------------------------------------------------------------------ prepare
def test_prepare_reads_01_masks_and_checks_reference_points(tmp_path):
    src = tmp_path / "src" / "Kvasir-SEG"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    rng = np.random.default_rng(0)
    for stem in ("p1", "p2"):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(src / "images" / f"{stem}.jpg")
        ENCODINGS["uint8 0/1"](src / "masks" / f"{stem}.png")
    lists = tmp_path / "lists.json"
    lists.write_text(json.dumps({"train": ["p1"], "test": ["p2"]}))
    out = tmp_path / "out"
    prepare("kvasir-seg", tmp_path / "src", out, split_from=str(lists), progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"] == {"train": 1, "test": 1}, manifest
    ref = tmp_path / "ref" / "test"
    ref.mkdir(parents=True)
    (ref / "points.json").write_text(json.dumps({"p2.png": [[[10, 10], [2000, 3], [4, 4]], [1, 1, 1]]}))
    with pytest.raises(DataError, match=r"ref/test/points\.json: p2\.png: point 1 .* outside"):
        prepare("kvasir-seg", tmp_path / "src", tmp_path / "out2", split_from=str(lists),
                        points_from=str(tmp_path / "ref"), progress=False)
