"""Shared test fixtures (tests never import each other; what they share lives here).

- ``repo_root``: the repository root (end-to-end tests run ``run_benchmark.py`` from there).
- ``samples_root`` / ``official_root`` / ``golden_root``: ../shared/fixtures (tests may read them;
  the project never does); a test that needs one is skipped when it is absent.
- ``tiny_cache``: one folder per session for the tiny stream's generated images and the feature
  cache. Both are keyed by content (generator settings; weights, files and tap), so sharing them
  only saves rebuilding: every run still writes its records and resume state under its own output.
- ``tiny_run``: the argument list of a quick ``run`` on the built-in ``tiny`` stream.
- ``tiny_grid``: a writer of grid files of zero_shot runs on the tiny stream.
- ``saved_models_run`` / ``saved_baselines_run``: one tiny run with ``--save-models`` (records and
  saved models) of a few methods / of the baselines with merge state, importances or memories, per session.
- ``comparable``: a record without what legitimately differs between two runs of one command.
- ``tiny_domain``: a writer of small folder-format domains (random images with a bright square).
- ``one_thread``: one torch intra-op thread for a module's tests.
- ``block6_domains``: a random-weight sam_small and two tiny training domains cached at block6.
- ``dead_pid``: the pid of a process that has exited (temporary files named with it are stale).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"


def _shared(name: str) -> Path:
    root = FIXTURES / name
    if not root.is_dir():
        pytest.skip(f"shared fixtures not found at {root}")
    return root


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def samples_root() -> Path:
    return _shared("samcl_samples")


@pytest.fixture(scope="session")
def official_root() -> Path:
    return _shared("samcl_official")


@pytest.fixture(scope="session")
def golden_root() -> Path:
    return _shared("samcl_golden")


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module's tests (``pytestmark = pytest.mark.usefixtures(
    "one_thread")``): on a small shared machine extra threads only spin. Restored after."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: no zombie keeps the pid alive
    return proc.pid


# ------------------------------------------------------------------------------- tiny runs
@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """The tiny stream's images (``synthetic/``) and the feature cache (``features/``), shared by
    the session's runs (both content-keyed, so a run never sees another run's results)."""
    return tmp_path_factory.mktemp("tiny_cache")


@pytest.fixture
def tiny_run(tmp_path, tiny_cache) -> Callable[..., list]:
    """``tiny_run(methods, output=None, *, domains=None, checkpoint="none", epochs=2,
    batch_size=2, report=False)`` -> the argument list of ``run_benchmark.py run`` on the built-in
    ``tiny`` stream (polyp, shadow, lesion + evaluation-only natural; 4 training and 2 test images
    per domain), random weights, no progress bars. ``output`` defaults to ``tmp_path/results``;
    ``domains`` picks trained domains; ``epochs`` / ``batch_size`` None keep the methods' own;
    ``report`` keeps the leaderboard print-out; runs go one after another in this process
    (``--jobs 1``: tests may patch the process). Append more options (``--set``, ``--seeds``,
    ``--device``) to the list: a later ``--set`` of a key wins."""

    def args(methods: str, output: Optional[Path] = None, *, domains: Optional[Sequence[str]] = None,
             checkpoint: str = "none", epochs: Optional[int] = 2, batch_size: Optional[int] = 2,
             report: bool = False) -> list:
        out = ["run", "--stream", "tiny", "--methods", methods, "--checkpoint", checkpoint,
               "--output", str(tmp_path / "results" if output is None else output),
               "--set", f"cache_dir={tiny_cache}/features",
               "--set", f"stream_overrides.synthetic.cache_dir={tiny_cache}/synthetic",
               "--no-progress", "--jobs", "1"]
        if domains is not None:
            out += ["--set", f"stream_overrides.domains=[{','.join(domains)}]"]
        if epochs is not None:
            out += ["--set", f"hparams.epochs={epochs}"]
        if batch_size is not None:
            out += ["--set", f"hparams.batch_size={batch_size}"]
        if not report:
            out.append("--no-report")
        return out

    return args


#: the methods of ``saved_models_run``
SAVED_METHODS = ("lora", "samcl", "finetune_decoder", "replay", "joint")
#: the methods of ``saved_baselines_run``: those whose state holds merge state, importances or
#: memories of items (cached features, masks, prompts, logits)
SAVED_BASELINES = ("merge_mean", "regcl", "magmax", "dop", "replay_merge", "si", "mas", "gem", "agem", "der")


def _saved_run(tmp_path_factory, tiny_cache, methods: Sequence[str], *sets: str) -> Path:
    """The output folder of one ``run --save-models`` of ``methods`` on two trained
    domains of the tiny stream (+ the evaluation-only natural), random weights, one epoch."""
    from benchmark.cli import main

    out = tmp_path_factory.mktemp("saved_models") / "results"
    args = ["run", "--stream", "tiny", "--methods", ",".join(methods), "--checkpoint", "none",
            "--output", str(out), "--set", f"cache_dir={tiny_cache}/features",
            "--set", f"stream_overrides.synthetic.cache_dir={tiny_cache}/synthetic",
            "--set", "stream_overrides.domains=[polyp,shadow]", "--set", "hparams.epochs=1",
            "--set", "hparams.batch_size=2", "--save-models", "--no-progress", "--no-report"]
    for item in sets:
        args += ["--set", item]
    assert main(args) == 0
    return out


@pytest.fixture(scope="session")
def saved_models_run(tmp_path_factory, tiny_cache) -> Path:
    """``_saved_run`` of lora, samcl, finetune_decoder, replay and joint: a record per method and
    ``models/<run id>/domain_{1,2}/``."""
    return _saved_run(tmp_path_factory, tiny_cache, SAVED_METHODS, "method_hparams.samcl.selector_epochs=3")


@pytest.fixture(scope="session")
def saved_baselines_run(tmp_path_factory, tiny_cache) -> Path:
    """``_saved_run`` of the ``SAVED_BASELINES`` (dop with 5 optimisation steps per weight)."""
    return _saved_run(tmp_path_factory, tiny_cache, SAVED_BASELINES, "method_hparams.dop.dop_num_steps=5")


@pytest.fixture
def tiny_grid(tiny_cache) -> Callable[..., Path]:
    """``tiny_grid(tmp, output, **fields)`` writes ``tmp/grid.yaml``: zero_shot, seeds 1 and 2, orders
    None and 1 (shadow before polyp), sam_small with random weights, on two domains of the tiny stream (2 training
    images each); ``fields`` replace the grid's fields. Returns its path."""
    import yaml

    def write(tmp: Path, output: Path, **fields) -> Path:
        grid = {"methods": ["zero_shot"], "seeds": [1, 2], "order_seeds": [None, 1],
                "backbones": ["sam_small"], "output": str(output),
                "set": {"stream": "tiny", "checkpoint": None, "cache_dir": f"{tiny_cache}/features",
                        "progress": False,
                        "stream_overrides.synthetic.cache_dir": f"{tiny_cache}/synthetic",
                        "stream_overrides.synthetic.train_per_domain": 2,
                        "stream_overrides.domains": ["polyp", "shadow"]}}
        grid.update(fields)
        path = tmp / "grid.yaml"
        path.write_text(yaml.safe_dump(grid))
        return path

    return write


def _comparable(record: dict) -> dict:
    """A record without what legitimately differs between runs (times, dates, paths)."""
    return {"matrices": record["matrices"], "storage": record["storage"],
            "hparams": record["hparams"], "seed": record["seed"], "stream": record["stream"],
            "loss_history": record["extra"]["loss_history"], "run_id": record["extra"]["run_id"]}


@pytest.fixture(scope="session")
def comparable() -> Callable[[dict], dict]:
    """``comparable(record_dict)``: the parts of a record two runs of one command must share."""
    return _comparable


# ------------------------------------------------------------------------------- tiny domains
def _write_tiny_domain(root: Path, split: str = "test", n: int = 4, size: int = 64, seed: int = 0,
                       mask_ext: str = "png") -> Path:
    """``n`` random images with a bright square object each, masks and points.json; returns root."""
    from PIL import Image

    from scenarios.points import write_points_json

    rng = np.random.default_rng(seed)
    img_dir, mask_dir = root / split / "images", root / split / "masks"
    img_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = rng.integers(0, 120, (size, size, 3), dtype=np.uint8)
        mask = np.zeros((size, size), np.uint8)
        x0, y0 = rng.integers(4, size // 2, 2)
        w = int(rng.integers(size // 6, size // 3))
        mask[y0:y0 + w, x0:x0 + w] = 255
        image[mask > 0] = rng.integers(150, 255, 3)
        Image.fromarray(image).save(img_dir / f"img{i:02d}.png")
        Image.fromarray(mask).save(mask_dir / f"img{i:02d}.{mask_ext}")
    write_points_json(root / split, num_points=3, seed=seed)
    return root


@pytest.fixture(scope="session")
def block6_domains(tmp_path_factory) -> tuple:
    """``(backbone, views)``: a random-weight sam_small (seed 0; strategies take deep copies) and
    two tiny training domains (4 images, 48 px, seeds 0 and 1) cached at ``block6``, as the runner
    feeds the LoRA family and the merging methods."""
    import torch

    from benchmark.backbones import build_backbone
    from benchmark.engine.feature_cache import FeatureCache
    from scenarios.folder import FolderSegmentationDataset

    torch.manual_seed(0)
    backbone = build_backbone("sam_small", checkpoint=None)
    tmp = tmp_path_factory.mktemp("block6_domains")
    cache = FeatureCache(tmp / "cache", progress=False)
    views = []
    for d in range(2):
        root = _write_tiny_domain(tmp / f"dom{d}", split="train", n=4, size=48, seed=d)
        ds = FolderSegmentationDataset(root, "train", image_size=256, domain_index=d)
        views.append(cache.view(backbone, ds, "block6"))
    return backbone, views


@pytest.fixture(scope="session")
def tiny_domain() -> Callable[..., Path]:
    """``tiny_domain(root, split="test", n=4, size=64, seed=0, mask_ext="png")`` writes a small
    folder-format domain (images/, masks/, masks/points.json) under ``root`` and returns ``root``."""
    return _write_tiny_domain
