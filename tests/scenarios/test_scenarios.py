"""Scenarios: folder loader, point prompts, stream configs, synthetic domains, Avalanche conversion."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scenarios.config import ConfigError, load_stream_config
from scenarios.folder import FolderSegmentationDataset
from scenarios.points import points_for_mask, read_mask, sample_points, write_points_json, write_points_tree
from scenarios.stream import build_domain_stream, collate_samples, to_avalanche
from scenarios.synthetic import DOMAINS, generate_sample, generate_synthetic_stream


# ------------------------------------------------------------------ helpers
def make_split(root: Path, items: dict[str, tuple[str, np.ndarray]], split: str = "test") -> Path:
    """items: image file name -> (mask file name, bool mask); images are random RGB of the mask's size."""
    split_dir = root / split
    (split_dir / "images").mkdir(parents=True)
    (split_dir / "masks").mkdir()
    rng = np.random.default_rng(0)
    for image_name, (mask_name, mask) in items.items():
        Image.fromarray(rng.integers(0, 256, (*mask.shape, 3), dtype=np.uint8)).save(split_dir / "images" / image_name)
        Image.fromarray(mask.astype(np.uint8) * 255).save(split_dir / "masks" / mask_name)
    return split_dir


def disk(h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2


def dataset(root: Path, split: str = "test", size: int = 32, **kw) -> FolderSegmentationDataset:
    return FolderSegmentationDataset(root, split, image_size=size, domain_index=2, **kw)


# ------------------------------------------------------------------ real samples (jpg masks)
@pytest.mark.parametrize("domain", ["Kvasir", "ISIC"])
def test_loader_on_real_samples(samples_root: Path, domain: str) -> None:
    ds = dataset(samples_root / domain, size=64)
    stored = json.loads((samples_root / domain / "test" / "masks" / "points.json").read_text())
    assert len(ds) == 5 and ds.domain_name == domain
    for i in range(len(ds)):
        item = ds[i]
        assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 64, 64)
        assert item["mask"].dtype == torch.float32 and item["mask"].shape == (64, 64)
        assert set(item["mask"].unique().tolist()) == {0.0, 1.0}
        pts, labels = stored[ds.names[i]]  # masks share the image's file name here
        assert torch.allclose(item["points"], torch.tensor(pts) * 64 / 1024)
        assert item["point_labels"].tolist() == labels
        assert item["domain"] == 2 and item["index"] == i
        assert set(ds.load_target(i)) == set(item) - {"image"}
    assert len(ds.files()) == 11 and ds.files()[-1].name == "points.json"


def test_threshold_and_reference_readings_differ_on_kvasir_jpeg_edges(samples_root: Path) -> None:
    for domain, lo, hi in (("Kvasir", 0.03, 0.08), ("ISIC", 0.0, 0.0)):
        thr = dataset(samples_root / domain, size=1024)
        ref = dataset(samples_root / domain, size=1024, mask_reading="reference")
        for i in range(len(thr)):
            a, b = thr.load_target(i)["mask"], ref.load_target(i)["mask"]
            assert bool((b <= a).all())  # 255 >= 128: reference foreground is a subset
            lost = float((a.sum() - b.sum()) / a.sum())
            assert lo <= lost <= hi, (domain, i, lost)


def test_points_of_real_samples_lie_on_the_1024_mask(samples_root: Path) -> None:
    masks = samples_root / "Kvasir" / "test" / "masks"
    for name, (pts, _) in json.loads((masks / "points.json").read_text()).items():
        mask = read_mask(masks / name, 1024)
        assert all(mask[int(y), int(x)] for x, y in pts)  # x = column, y = row


# ------------------------------------------------------------------ folder edge cases
def test_png_and_jpg_masks_in_any_combination(tmp_path: Path) -> None:
    m1, m2 = disk(40, 60, 20, 30, 10), disk(50, 50, 10, 10, 8)
    split = make_split(tmp_path, {"a.png": ("a.png", m1), "b.jpg": ("b.png", m2)})
    Image.fromarray(m2.astype(np.uint8) * 255).save(split / "masks" / "c.jpg", quality=90)
    Image.fromarray(np.zeros((50, 50, 3), np.uint8)).save(split / "images" / "c.png")
    write_points_json(split)
    ds = dataset(tmp_path)
    assert ds.names == ["a.png", "b.jpg", "c.png"]
    for i in range(3):
        item = ds[i]
        x, y = item["points"].long().T
        assert bool(item["mask"][y, x].all())  # points scaled to S land on the object


def test_missing_points_json_samples_the_same_points_as_the_points_command(tmp_path: Path, caplog) -> None:
    make_split(tmp_path, {f"{i}.png": (f"{i}.png", disk(64, 64, 20 + i, 30, 9)) for i in range(3)})
    with caplog.at_level(logging.WARNING):
        live = dataset(tmp_path)
    assert "run_benchmark.py points" in caplog.text and live.points_file is None
    write_points_json(tmp_path / "test", seed=1234)
    stored = dataset(tmp_path)
    for i in range(3):
        assert torch.equal(live[i]["points"], stored[i]["points"])


def test_missing_points_entry_is_sampled_with_a_warning(tmp_path: Path, caplog) -> None:
    split = make_split(tmp_path, {f"{i}.png": (f"{i}.png", disk(64, 64, 32, 32, 12)) for i in range(2)})
    path = write_points_json(split)
    full = json.loads(path.read_text())
    path.write_text(json.dumps({"0.png": full["0.png"]}))
    with caplog.at_level(logging.WARNING):
        ds = dataset(tmp_path)
    assert "1.png" in caplog.text and "points" in caplog.text
    assert torch.allclose(ds[1]["points"], torch.tensor(full["1.png"][0]) * 32 / 1024)


def test_image_without_mask_is_an_error_naming_the_file(tmp_path: Path) -> None:
    split = make_split(tmp_path, {"a.png": ("a.png", disk(32, 32, 16, 16, 5))})
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(split / "images" / "lonely.jpg")
    with pytest.raises(FileNotFoundError, match="lonely.jpg"):
        dataset(tmp_path)


def test_non_image_files_are_skipped_with_a_warning(tmp_path: Path, caplog) -> None:
    split = make_split(tmp_path, {"a.png": ("a.png", disk(32, 32, 16, 16, 5))})
    (split / "images" / "notes.txt").write_text("not an image")
    (split / "images" / ".DS_Store").write_bytes(b"\0")
    with caplog.at_level(logging.WARNING):
        ds = dataset(tmp_path)
    assert ds.names == ["a.png"] and "notes.txt" in caplog.text


def test_empty_masks_are_skipped_with_one_warning(tmp_path: Path, caplog) -> None:
    empty = np.zeros((32, 32), bool)
    tiny = np.zeros((512, 512), bool)
    tiny[100, 101] = True  # one pixel: present at 1024, gone after NEAREST resize to 32
    split = make_split(tmp_path, {"e1.png": ("e1.png", empty), "e2.png": ("e2.png", tiny),
                                  "ok.png": ("ok.png", disk(32, 32, 16, 16, 6))})
    with caplog.at_level(logging.WARNING):
        path = write_points_json(split)
    assert set(json.loads(path.read_text())) == {"e2.png", "ok.png"}  # empty at 1024: no entry
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        ds = dataset(tmp_path, size=32)
    assert ds.names == ["ok.png"]
    warnings = [r.getMessage() for r in caplog.records if "empty" in r.getMessage()]
    assert len(warnings) == 1 and "e1.png" in warnings[0] and "e2.png" in warnings[0]


def test_missing_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        dataset(tmp_path / "nowhere")


# ------------------------------------------------------------------ points
def test_sample_points_is_uniform_over_foreground_and_x_is_the_column() -> None:
    mask = np.zeros((1024, 1024), bool)
    mask[10:20, 500:900] = True  # a wide, flat bar
    pts = sample_points(mask, 200, np.random.default_rng(0))
    assert pts.shape == (200, 2)
    assert pts[:, 0].min() >= 500 and pts[:, 0].max() < 900 and pts[:, 1].min() >= 10 and pts[:, 1].max() < 20
    assert pts[:, 0].std() > 50  # spread over the bar
    with pytest.raises(ValueError):
        sample_points(np.zeros((4, 4), bool), 3, np.random.default_rng(0))


def test_points_command_is_reproducible_and_independent_of_the_listing(tmp_path: Path) -> None:
    masks = {f"{i}.png": (f"{i}.png", disk(48, 64, 24, 20 + 4 * i, 10)) for i in range(4)}
    split = make_split(tmp_path / "all", masks)
    first = write_points_json(split).read_bytes()
    with pytest.raises(FileExistsError):
        write_points_json(split)
    assert write_points_json(split, overwrite=True).read_bytes() == first
    subset = make_split(tmp_path / "some", {k: masks[k] for k in ("1.png", "3.png")})
    a, b = json.loads(first), json.loads(write_points_json(subset).read_text())
    assert b == {k: a[k] for k in b}
    other = json.loads(write_points_json(split, seed=7, overwrite=True).read_text())
    assert other != a and all(len(v[0]) == 3 and v[1] == [1, 1, 1] for v in a.values())
    assert points_for_mask(split / "masks" / "0.png", 3, 1234).tolist() == a["0.png"][0]


# ------------------------------------------------------------------ configs
def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_builtin_streams_load() -> None:
    paper = load_stream_config("paper")
    assert [d.name for d in paper.domains] == ["Kvasir", "CAMO", "ISTD", "ISIC", "COD10K"]
    assert [d.name for d in paper.eval_only] == ["COCO"] and paper.image_size == 1024
    assert paper.prompts.num_points == 3 and paper.domains[0].root == "data/Kvasir"
    syn = load_stream_config()
    assert syn.name == "synthetic" and syn.image_size == 256 and len(syn.domains) >= 5
    assert all(d.name in DOMAINS for d in syn.domains + syn.eval_only)


def test_builtin_tiny_stream_is_the_synthetic_generator_in_small() -> None:
    tiny, syn = load_stream_config("tiny"), load_stream_config("synthetic")
    assert tiny.name == "tiny" and [d.name for d in tiny.domains] == ["polyp", "shadow", "lesion"]
    assert [d.name for d in tiny.eval_only] == ["natural"] and tiny.eval_only[0].train == "train"
    assert (tiny.synthetic.train_per_domain, tiny.synthetic.test_per_domain) == (4, 2)
    assert tiny.image_size == syn.image_size == 256 and tiny.prompts == syn.prompts
    assert all(d.name in DOMAINS for d in tiny.domains + tiny.eval_only)


def test_overrides_and_order_seed() -> None:
    cfg = load_stream_config("synthetic", {"image_size": "128", "synthetic.train_per_domain": 4, "order_seed": 3})
    assert cfg.image_size == 128 and cfg.synthetic.train_per_domain == 4
    order = [d.name for d in cfg.ordered_domains()]
    assert sorted(order) == sorted(d.name for d in cfg.domains) and order != [d.name for d in cfg.domains]
    assert order == [d.name for d in load_stream_config("synthetic", {"order_seed": 3}).ordered_domains()]


@pytest.mark.parametrize("text, overrides, match", [
    ("domains: [{name: a, root: x}]\nimage_sise: 3\n", None, r"unknown field 'image_sise'"),
    ("domains: [{name: a, root: x}]\nimage_size: big\n", None, r"image_size: expected int"),
    ("domains: [{name: a, root: x}]\n", {"prompts.num_points": 2.5}, r"prompts.num_points: expected int"),
    ("domains: [{name: a, root: x, tset: y}]\n", None, r"unknown field 'domains\[0\].tset'"),
    ("domains: [{name: a}]\n", None, r"domains\[0\].root: missing"),
    ("domains: [{name: a, root: x}]\nmask_reading: floor\n", None, r"mask_reading"),
    ("image_size: 3\n", None, r"missing field 'domains'"),
    ("domains: [{name: a, root: x}]\n", {"synthetic.speed": 1}, r"unknown field 'synthetic.speed'"),
    ("domains: [a: [\n", None, r"not valid YAML"),
])
def test_config_errors_name_the_file_and_field(tmp_path: Path, text, overrides, match) -> None:
    path = write_yaml(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError, match=match) as err:
        load_stream_config(path, overrides)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_unknown_stream_name() -> None:
    with pytest.raises(ConfigError, match="paper"):
        load_stream_config("papr")
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_stream_config("missing.yaml")


def test_relative_roots_resolve_against_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    for name in ("a", "b", "c"):
        for split in ("train", "test"):
            write_points_json(make_split(tmp_path / "data" / name, {"x.png": ("x.png", disk(32, 32, 16, 16, 7))}, split))
    write_yaml(tmp_path / "s.yaml", "image_size: 16\ndomains:\n  - {name: A, root: data/a}\n"
                                           "  - {name: B, root: data/b}\neval_only: [{name: C, root: data/c}]\n")
    monkeypatch.chdir(tmp_path)
    stream = build_domain_stream(load_stream_config("s.yaml"))
    assert stream.domain_names == ["A", "B", "C"] and stream.trained == 2
    assert len(stream.train_datasets) == 2 and len(stream.test_datasets) == 3
    assert [d.domain_index for d in stream.test_datasets] == [0, 1, 2]
    assert stream.test_datasets[2].root == tmp_path / "data" / "c"


# ------------------------------------------------------------------ synthetic stream
def tiny_synthetic(cache: Path, **extra):
    overrides = {"image_size": 48, "synthetic.train_per_domain": 2, "synthetic.test_per_domain": 1,
                 "synthetic.cache_dir": str(cache), **extra}
    return load_stream_config("synthetic", overrides)


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_synthetic_stream_is_deterministic_and_reused(tmp_path: Path) -> None:
    a = generate_synthetic_stream(tiny_synthetic(tmp_path / "one"))
    b = generate_synthetic_stream(tiny_synthetic(tmp_path / "two"))
    assert a.name == b.name and tree_bytes(a) == tree_bytes(b)
    files = tree_bytes(a)
    assert "natural/test/masks/points.json" in files and (a / "natural" / "train").exists()  # feeds buffers
    assert len([f for f in files if f.endswith(".png") and "/images/" in f]) == 5 * 3 + 1 * 3
    stamp = (a / "settings.json").stat().st_mtime_ns
    assert generate_synthetic_stream(tiny_synthetic(tmp_path / "one")) == a
    assert (a / "settings.json").stat().st_mtime_ns == stamp
    c = generate_synthetic_stream(tiny_synthetic(tmp_path / "one", **{"synthetic.seed": 1}))
    assert c != a and tree_bytes(c)["polyp/train/images/polyp_train_0000.png"] != files["polyp/train/images/polyp_train_0000.png"]
    assert not [p for p in (tmp_path / "one").iterdir() if p.name.startswith(".")]  # no temp folder left


def test_a_killed_generation_is_removed_when_the_cache_is_opened(tmp_path: Path, dead_pid: int) -> None:
    import socket

    host = socket.gethostname()
    killed = tmp_path / f".0123456789abcdef.x1y2z3@{host}@{dead_pid}"  # generation killed half-way
    running = tmp_path / f".fedcba9876543210.a1b2c3@{host}@{os.getpid()}"  # another generator, alive
    for folder in (killed, running):
        (folder / "polyp" / "train" / "images").mkdir(parents=True)
    root = generate_synthetic_stream(tiny_synthetic(tmp_path))
    assert not killed.exists() and running.exists() and (root / "settings.json").is_file()


def test_synthetic_domains_differ_and_have_objects() -> None:
    means = {}
    for name in DOMAINS:
        img, mask = generate_sample(name, 0, "train", 0, 64)
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8 and mask.shape == (64, 64)
        assert 0.002 < mask.mean() < 0.7, name
        assert not np.array_equal(img, generate_sample(name, 0, "train", 1, 64)[0])
        means[name] = img.reshape(-1, 3).mean(0)
    assert len({tuple(np.round(m)) for m in means.values()}) == len(DOMAINS)


# ------------------------------------------------------------------ Avalanche
class FeatureView(torch.utils.data.Dataset):
    """Stands in for a feature-cache view: same dict, `features` instead of `image`."""

    def __init__(self, ds: FolderSegmentationDataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict:
        return {"features": {"neck": torch.full((4, 2, 2), float(i))}, **self.ds.load_target(i)}


def test_avalanche_benchmark_has_one_experience_per_domain(tmp_path: Path) -> None:
    stream = build_domain_stream(tiny_synthetic(tmp_path))
    assert stream.trained == 5 and stream.domain_names[-1] == "natural"
    bm = stream.to_avalanche()
    assert len(bm.train_stream) == 5 and len(bm.test_stream) == 6
    assert [e.task_label for e in bm.train_stream] == [0, 1, 2, 3, 4]
    assert [e.task_label for e in bm.test_stream] == [0, 1, 2, 3, 4, 5]
    exp = bm.train_stream[3]
    batch = next(iter(torch.utils.data.DataLoader(exp.dataset, batch_size=2, collate_fn=exp.dataset.collate_fn)))
    assert batch["image"].shape == (2, 3, 48, 48) and batch["mask"].shape == (2, 48, 48)
    assert batch["points"].shape == (2, 3, 2) and batch["domain"].tolist() == [3, 3]

    views = to_avalanche([FeatureView(d) for d in stream.train_datasets], [FeatureView(d) for d in stream.test_datasets])
    exp = views.test_stream[5]
    batch = next(iter(torch.utils.data.DataLoader(exp.dataset, batch_size=1, collate_fn=exp.dataset.collate_fn)))
    assert exp.task_label == 5 and "image" not in batch and batch["features"]["neck"].shape == (1, 4, 2, 2)


def test_collate_samples_handles_nested_dicts_and_numbers() -> None:
    items = [{"features": {"a": torch.ones(2), "b": torch.zeros(1)}, "domain": 1, "w": 0.5, "name": "x"}] * 3
    out = collate_samples(items)
    assert out["features"]["a"].shape == (3, 2) and out["domain"].tolist() == [1, 1, 1]
    assert out["w"].dtype == torch.float32 and out["name"] == ["x"] * 3


def test_points_tree_writes_every_split_below_a_folder(tmp_path: Path) -> None:
    for name in ("a", "b"):
        for split in ("train", "test"):
            make_split(tmp_path / name, {"x.png": ("x.png", disk(16, 16, 8, 8, 4))}, split)
    written = write_points_tree(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in written] == [
        "a/test/masks/points.json", "a/train/masks/points.json", "b/test/masks/points.json", "b/train/masks/points.json"]
    assert write_points_tree(tmp_path / "a" / "test", overwrite=True) == [written[0]]
    with pytest.raises(FileNotFoundError, match="no <split>/masks"):
        write_points_tree(tmp_path / "a" / "test" / "images")
