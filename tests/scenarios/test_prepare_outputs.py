"""What prepare writes: the reference's points copied exactly (the rest generated as the points command
does), idempotent re-runs, nothing half-written after a failure, and the reference's model input
reproduced through prepare + the folder loader (the shared goldens)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scenarios.folder import FolderSegmentationDataset
from scenarios.points import read_mask, write_points_json
from scenarios.prepare import build, prepare

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
KVASIR_POINTS = FIXTURES / "samcl_points" / "Kvasir"


def fake_kvasir(root: Path, stems, size=(40, 30)) -> Path:
    for sub in ("images", "masks"):
        (root / "Kvasir-SEG" / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for stem in stems:
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(
            root / "Kvasir-SEG" / "images" / f"{stem}.jpg")
        m = np.zeros((size[1], size[0], 3), np.uint8)
        m[5:25, 8:30] = 255
        Image.fromarray(m).save(root / "Kvasir-SEG" / "masks" / f"{stem}.jpg")
    return root


def write_lists(path: Path, **splits) -> str:
    path.write_text(json.dumps(splits))
    return str(path)


def stray_temps(out: Path) -> list:
    return sorted(p.name for p in out.parent.glob(f".{out.name}.*"))


# ------------------------------------------------------------------ points
def test_points_from_copies_the_reference_and_generates_the_rest(tmp_path):
    if not (KVASIR_POINTS / "test" / "points.json").is_file():
        pytest.skip("reference points not found")
    ref = {s: json.loads((KVASIR_POINTS / s / "points.json").read_text()) for s in ("train", "test")}
    train, test = sorted(ref["train"])[:3], sorted(ref["test"])[:2]
    ours = ["zz0000000000000000000000a", "zz0000000000000000000000b"]
    stems = [Path(n).stem for n in train + test] + ours
    fake_kvasir(tmp_path / "src", stems)
    lists = write_lists(tmp_path / "l.json", train=stems[:3] + ours[:1], test=stems[3:5] + ours[1:])
    summary = prepare("kvasir-seg", tmp_path / "src", tmp_path / "out", progress=False,
                      split_from=lists, points_from=str(KVASIR_POINTS))
    assert summary["points"] == {"reference": 5, "generated": 2, "none_empty_at_1024": 0}
    for split, names in (("train", train), ("test", test)):
        written = json.loads((tmp_path / "out" / split / "masks" / "points.json").read_text())
        for name in names:
            assert written[f"{Path(name).stem}.png"] == ref[split][name]  # values, exactly
    generated = tmp_path / "gen"
    shutil.copytree(tmp_path / "out" / "train", generated)
    write_points_json(generated, overwrite=True)  # the points command on our output
    want = json.loads((generated / "masks" / "points.json").read_text())
    got = json.loads((tmp_path / "out" / "train" / "masks" / "points.json").read_text())
    assert got[f"{ours[0]}.png"] == want[f"{ours[0]}.png"]


def test_points_from_with_other_num_points_is_an_error(tmp_path):
    if not (KVASIR_POINTS / "test" / "points.json").is_file():
        pytest.skip("reference points not found")
    fake_kvasir(tmp_path / "src", ["a"])
    with pytest.raises(ValueError, match="--num-points is 5"):
        prepare("kvasir-seg", tmp_path / "src", tmp_path / "out", progress=False, num_points=5,
                split_from=write_lists(tmp_path / "l.json", test=["a"]), points_from=str(KVASIR_POINTS))


# ------------------------------------------------------------------ re-runs
def test_rerun_is_idempotent_and_a_different_out_needs_overwrite(tmp_path):
    fake_kvasir(tmp_path / "src", ["a", "b", "c"])
    out = tmp_path / "out"
    lists = write_lists(tmp_path / "l.json", train=["a", "b"], test=["c"])
    first = prepare("kvasir-seg", tmp_path / "src", out, progress=False, split_from=lists)
    files = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    mtime = (out / "manifest.json").stat().st_mtime_ns
    again = prepare("kvasir-seg", tmp_path / "src", out, progress=False, split_from=lists)
    assert (first["status"], again["status"]) == ("written", "unchanged")
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == files
    assert (out / "manifest.json").stat().st_mtime_ns == mtime  # kept, not rewritten
    shutil.rmtree(out)
    prepare("kvasir-seg", tmp_path / "src", out, progress=False, split_from=lists)
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == files  # same bytes
    with pytest.raises(ValueError, match="different data .* --overwrite"):
        prepare("kvasir-seg", tmp_path / "src", out, progress=False, split_from=lists, seed=7)
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == files
    replaced = prepare("kvasir-seg", tmp_path / "src", out, progress=False, split_from=lists, seed=7,
                       overwrite=True)
    assert replaced["status"] == "replaced" and replaced["options"]["seed"] == 7
    assert stray_temps(out) == []


def test_an_unrelated_existing_out_is_not_touched(tmp_path):
    fake_kvasir(tmp_path / "src", ["a"])
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a prepare output"):
        prepare("kvasir-seg", tmp_path / "src", out, progress=False,
                split_from=write_lists(tmp_path / "l.json", test=["a"]))
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failed_run_leaves_no_out_and_no_temp(tmp_path, monkeypatch, error):
    fake_kvasir(tmp_path / "src", [f"s{i}" for i in range(6)])
    real, calls = build.process, []

    def dying(pair, tmp, ctx):
        calls.append(pair.stem)
        if len(calls) == 3:
            raise error("killed mid-way")
        return real(pair, tmp, ctx)

    monkeypatch.setattr(build, "process", dying)
    out = tmp_path / "out"
    with pytest.raises(error):
        prepare("kvasir-seg", tmp_path / "src", out, progress=False,
                split_from=write_lists(tmp_path / "l.json", train=[f"s{i}" for i in range(6)]))
    assert not out.exists() and stray_temps(out) == []


def test_a_temp_folder_left_by_a_killed_process_is_removed(tmp_path, dead_pid):
    import os
    import socket

    fake_kvasir(tmp_path / "src", ["a"])
    out = tmp_path / "out"
    stale = tmp_path / f".out.prepare-x1y2@{socket.gethostname()}@{dead_pid}"
    running = tmp_path / f".out.prepare-z3w4@{socket.gethostname()}@{os.getpid()}"  # alive: kept
    for folder in (stale, running):
        (folder / "train" / "images").mkdir(parents=True)
    prepare("kvasir-seg", tmp_path / "src", out, progress=False,
            split_from=write_lists(tmp_path / "l.json", test=["a"]))
    assert stray_temps(out) == [running.name] and (out / "manifest.json").is_file()


# ------------------------------------------------------------------ the reference's input (goldens)
@pytest.mark.parametrize("domain, golden, image_name", [
    ("Kvasir", "sam1_kvasir.npz", "cju1amqw6p8pw0993d9gc5crl.jpg"),
    ("ISIC", "sam1_isic.npz", "ISIC_0000003.jpg")])
def test_prepare_and_loader_reproduce_the_reference_input(tmp_path, samples_root, golden_root, domain,
                                                          golden, image_name):
    sample = samples_root / domain / "test"
    src = tmp_path / "src"
    if domain == "Kvasir":  # the official names: images/<id>.jpg, masks/<id>.jpg
        layout = {"images": src / "Kvasir-SEG" / "images", "masks": src / "Kvasir-SEG" / "masks"}
        args = ("kvasir-seg", {"split_from": write_lists(tmp_path / "l.json", test=[
            p.name for p in (sample / "images").iterdir()])})
        mask_name = "{}.jpg"
    else:  # ISIC 2016: ISIC_<id>.jpg and ISIC_<id>_Segmentation.png
        layout = {"images": src / "ISBI2016_ISIC_Part1_Test_Data",
                  "masks": src / "ISBI2016_ISIC_Part1_Test_GroundTruth"}
        for name in ("Training_Data", "Training_GroundTruth"):
            (src / f"ISBI2016_ISIC_Part1_{name}").mkdir(parents=True)
        args = ("isic2016", {})
        mask_name = "{}_Segmentation.png"
    for sub, folder in layout.items():
        folder.mkdir(parents=True)
        for p in (sample / sub).glob("*.jpg"):
            shutil.copyfile(p, folder / (p.name if sub == "images" else mask_name.format(p.stem)))
    prepare(args[0], src, tmp_path / "out", progress=False, points_from=str(samples_root / domain),
            mask_reading="reference", **args[1])
    ds = FolderSegmentationDataset(tmp_path / "out", "test", image_size=1024, domain_index=0,
                                   mask_reading="reference")
    assert sorted(ds.names) == sorted(p.name for p in (sample / "images").iterdir())
    item = ds[ds.names.index(image_name)]
    ref = np.load(golden_root / golden)
    assert np.array_equal(item["image"].permute(1, 2, 0).numpy(), ref["image_1024"])
    assert np.array_equal(item["points"].numpy(), ref["points"].astype(np.float32))
    assert np.array_equal(item["point_labels"].numpy(), ref["point_labels"].astype(np.float32))
    want = read_mask(sample / "masks" / image_name, 1024, "reference")
    assert np.array_equal(item["mask"].numpy().astype(bool), want)
