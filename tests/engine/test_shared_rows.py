"""Row 0 shared between runs (``Run.shared_row_key``): the claim behind it, checked for every
registered method, and a parallel-free end-to-end run whose records equal those of unshared runs."""
from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from pathlib import Path

import pytest

from benchmark.core.registry import list_methods
from benchmark.engine.config import load_run_config
from benchmark.engine.context import prepare
from benchmark.engine.run import Run

pytestmark = pytest.mark.usefixtures("one_thread")

#: the merging methods' other adapter: SAMCL's AugModule, present from the start
AUGMODULE_VARIANTS = ("regcl", "merge_mean", "magmax", "dop", "replay_merge")


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("shared_rows")
    return load_run_config(overrides={
        "stream": "tiny", "checkpoint": "none", "output": str(root / "results"),
        "cache_dir": str(root / "features"), "progress": False, "jobs": 1,
        "stream_overrides": {"synthetic.cache_dir": str(root / "synthetic"),
                             "domains": ["polyp", "shadow"]}})


def _first_row(ctx, cfg, method: str, method_hparams=None):
    """(share key, the row 0 this method evaluates itself) on ``ctx``, nothing shared."""
    if method_hparams is not None:
        cfg = dataclasses.replace(cfg, method_hparams={method: method_hparams})
    run = Run(ctx, cfg, method, 1234)
    run.views = ctx.views_at(run.resolved.tap)
    run.build_strategy()
    run.evaluate_row()
    return run.shared_row_key(), run.rows[0]


def test_every_method_that_claims_to_start_as_the_backbone_does(tiny_cfg):
    """Runs of one share key evaluate the same row 0 bit for bit; at least the LoRA family, SAMCL
    and the decoder methods share (the saving this exists for)."""
    ctx = prepare(tiny_cfg)
    by_key, keys = defaultdict(list), {}
    cases = [(m, None) for m in list_methods()] + [(m, {"adapter": "augmodule"}) for m in AUGMODULE_VARIANTS]
    for method, hp in cases:
        key, row = _first_row(ctx, tiny_cfg, method, hp)
        keys[(method, json.dumps(hp))] = key
        if key is not None:
            by_key[key].append((method, hp, json.dumps(row, sort_keys=True)))
    for key, rows in by_key.items():
        distinct = {r for _, _, r in rows}
        assert len(distinct) == 1, f"methods sharing a row 0 evaluate different ones: {[m for m, _, _ in rows]}"
    sharing = {m for rows in by_key.values() if len(rows) > 1 for m, _, _ in rows}
    assert {"lora", "ewc", "regcl", "samcl", "joint", "zero_shot", "finetune_decoder"} <= sharing
    assert keys[("l2p", "null")] is None  # its prompts act from the start


def test_shared_first_row_gives_the_records_of_unshared_runs(tmp_path, tiny_run, comparable):
    """lora then replay in one process: replay takes lora's row 0 (0 s, extra.row0_shared) and
    its record equals that of replay run alone, timings aside (replay's loader shuffles with
    torch's global generator, which an evaluated row 0 must leave as it found it)."""
    from benchmark.cli import main

    def records(folder):
        return {r["method"]: r for r in map(json.loads, map(Path.read_text, folder.glob("*.json")))}

    assert main(tiny_run("lora,replay", tmp_path / "both", domains=["polyp", "shadow"])) == 0
    assert main(tiny_run("replay", tmp_path / "alone", domains=["polyp", "shadow"])) == 0
    both, alone = records(tmp_path / "both"), records(tmp_path / "alone")["replay"]
    assert both["replay"]["extra"]["row0_shared"] and both["replay"]["timing"]["eval"][0] == 0.0
    assert not both["lora"]["extra"]["row0_shared"] and not alone["extra"]["row0_shared"]
    assert comparable(both["replay"]) == comparable(alone)
