"""scenarios/repeat.py (python -m scenarios.repeat): a folder-format split with each image repeated
under new names, and a stream file over the copies."""
import json

import numpy as np
import pytest
from PIL import Image

from scenarios.folder import FolderSegmentationDataset
from scenarios.repeat import main, repeat_split


def _split(root, names):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for k, name in enumerate(names):
        Image.fromarray(np.full((32, 32, 3), 40 * k, np.uint8)).save(root / "images" / f"{name}.jpg")
        mask = np.zeros((32, 32), np.uint8)
        mask[4:20, 4 + k:20 + k] = 255
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    points = {f"{names[0]}.png": [[[100.0, 200.0], [300.0, 300.0]], [1, 1]]}
    (root / "masks" / "points.json").write_text(json.dumps(points))


def test_each_image_mask_and_points_entry_is_repeated(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _split(src / "A" / "test", ["a0", "a1"])
    _split(src / "B" / "test", ["b0"])
    assert main([str(src), str(dst), "3", "--domains", "A", "B"]) == 0
    assert "A/test: 6 images" in capsys.readouterr().out
    names = sorted(p.name for p in (dst / "A" / "test" / "images").iterdir())
    assert names == [f"a{i}_r{k}.jpg" for i in range(2) for k in range(3)]
    assert (dst / "A" / "test" / "masks" / "a1_r2.png").read_bytes() == \
        (src / "A" / "test" / "masks" / "a1.png").read_bytes()
    points = json.loads((dst / "A" / "test" / "masks" / "points.json").read_text())
    assert sorted(points) == ["a0_r0.png", "a0_r1.png", "a0_r2.png"]  # a1 had no stored points
    ds = FolderSegmentationDataset(dst / "A", "test", image_size=32, domain_index=0, num_points=2)
    assert len(ds) == 6
    assert np.allclose(ds.load_target(0)["points"].numpy(), np.array([[100, 200], [300, 300]]) * 32 / 1024)


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    _split(tmp_path / "src" / "A" / "test", ["a0"])
    assert main([str(tmp_path / "src"), str(tmp_path / "out"), "0", "--domains", "A"]) == 2
    assert main([str(tmp_path / "src"), str(tmp_path / "src"), "2", "--domains", "A"]) == 2
    assert main([str(tmp_path / "src"), str(tmp_path / "out"), "2", "--domains", "Z"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error:") for line in err)
    assert "Z/test" in err[2]


def test_the_stream_file_points_at_the_copies(tmp_path):
    from scenarios.config import load_stream_config
    from scenarios.stream import build_domain_stream

    src, dst = tmp_path / "src", tmp_path / "dst"
    _split(src / "A" / "test", ["a0", "a1"])
    _split(src / "B" / "test", ["b0"])
    stream_file = tmp_path / "samples.yaml"
    assert main([str(src), str(dst), "2", "--domains", "A", "B", "--stream", str(stream_file),
                 "--image-size", "32"]) == 0
    cfg = load_stream_config(str(stream_file), {"prompts": {"num_points": 2, "seed": 1}})
    assert cfg.image_size == 32
    stream = build_domain_stream(cfg)
    assert stream.domain_names[:2] == ["A", "B"] and stream.trained == 2
    assert [len(d) for d in stream.train_datasets] == [4, 2] == [len(d) for d in stream.test_datasets]


def test_repeat_split_counts_and_needs_both_folders(tmp_path):
    _split(tmp_path / "src", ["a0", "a1", "a2"])
    assert repeat_split(tmp_path / "src", tmp_path / "dst", 2) == 6
    (tmp_path / "bare" / "images").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="images/ and masks/"):
        repeat_split(tmp_path / "bare", tmp_path / "out", 1)


def test_runs_as_a_module(tmp_path, repo_root):
    import subprocess
    import sys

    _split(tmp_path / "src" / "A" / "test", ["a0"])
    proc = subprocess.run([sys.executable, "-m", "scenarios.repeat", str(tmp_path / "src"),
                           str(tmp_path / "dst"), "2", "--domains", "A"],
                          cwd=repo_root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "A/test: 2 images" in proc.stdout
