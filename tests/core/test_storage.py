"""Storage accounting (benchmark/core/storage.py): kept training items, the per-domain ledger. That
a method's storage is the bytes it saves: engine/test_saved_models.py."""
import json

import numpy as np
import pytest
import torch

from benchmark.core.storage import (KeptSamples, StorageLedger, encode_samples, pack_masks, pack_prompts,
                                    sample_bytes, to_mb, unpack_masks)


def test_mb_is_mebibyte():
    assert to_mb(2 ** 20) == 1.0
    assert round(to_mb(61_304 * 4), 3) == 0.234      # the paper's AugModule size


def test_kept_items_are_stored_at_the_bytes_counted():
    """Images uint8 (3 x 10 x 10), masks one bit per pixel (100 bits -> 13 bytes), points float32 x, y, label."""
    items = [{"image": torch.full((3, 10, 10), i, dtype=torch.uint8), "mask": torch.eye(10),
              "points": torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "point_labels": torch.ones(2)}
             for i in range(3)]
    parts = encode_samples(items)
    counted = KeptSamples({0: [0, 1], 1: [5]}, points=2).nbytes("buffer", 10)
    assert counted == sample_bytes("buffer", 3, 10, 2) == {
        "buffer_images": 900, "buffer_masks": 39, "buffer_prompts": 72}
    assert {f"buffer_{k}": v.numel() * v.element_size() for k, v in parts.items()} == counted
    bits = np.unpackbits(parts["masks"][1].numpy())[:100].reshape(10, 10)
    assert (bits == np.eye(10)).all() and parts["prompts"][0, 1].tolist() == [3.0, 4.0, 1.0]


def test_ledger_views_and_round_trip():
    ledger = StorageLedger()
    ledger.record("d1", {"module_set": 100, "selector": 50})
    ledger.record("d2", {"module_set": 200, "selector": 60, "buffer": 40})
    assert ledger.totals() == [150, 300]
    assert ledger.increments() == [150, 150]
    assert ledger.component_increments() == [
        {"module_set": 100, "selector": 50, "buffer": 0},
        {"module_set": 100, "selector": 10, "buffer": 40}]
    assert ledger.final_total() == 300
    back = StorageLedger.from_dict(json.loads(json.dumps(ledger.to_dict())))
    assert back.to_dict() == ledger.to_dict() and back.domains == ["d1", "d2"]
    with pytest.raises(ValueError, match="selector"):
        ledger.record("d3", {"selector": -1})
    with pytest.raises(ValueError, match="entries"):
        StorageLedger.from_dict({"totals": []})


def test_packed_masks_and_prompts_read_back():
    masks = (torch.rand(3, 5, 7) > 0.5).float()  # 35 pixels: 5 bytes per mask
    packed = pack_masks(masks)
    assert packed.shape == (3, 5) and packed.dtype == torch.uint8
    assert torch.equal(unpack_masks(packed, [5, 7]), masks)
    prompts = pack_prompts(torch.rand(3, 2, 2), torch.tensor([[1.0, 0.0]] * 3))
    assert prompts.shape == (3, 2, 3) and torch.equal(prompts[..., 2], torch.tensor([[1.0, 0.0]] * 3))
