"""Storage accounting (benchmark/core/storage.py): bytes of modules and tensors, the per-domain ledger."""
import json

import pytest
import torch
from torch import nn

from benchmark.core.storage import StorageLedger, module_bytes, tensor_bytes, to_mb


def test_mb_is_mebibyte():
    assert to_mb(2 ** 20) == 1.0
    assert round(to_mb(61_304 * 4), 3) == 0.234      # the paper's AugModule size


def test_module_and_tensor_bytes():
    lin = nn.Linear(10, 5)                            # 55 fp32 parameters
    assert module_bytes(lin) == 220
    assert module_bytes(lin, dtype=torch.float16) == 110
    assert module_bytes(nn.Sequential(lin, lin)) == 220      # shared parameters counted once
    assert module_bytes(lin.parameters()) == 220
    bn = nn.BatchNorm1d(4)  # weight, bias (fp32) + running mean/var (fp32) + int64 counter
    assert module_bytes(bn) == 8 * 4 + 8 * 4 + 8
    assert module_bytes(bn, include_buffers=False) == 32
    assert tensor_bytes(torch.zeros(3, 4, dtype=torch.uint8)) == 12


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
