"""bf16 autocast and channels-last at strategy level (methods/template.py): the code path a GPU runs
(only the autocast device type differs), exercised on CPU. Whole runs compared with fp32:
e2e/test_precision_runs.py."""
import copy

import numpy as np
import pytest
import torch

from benchmark.backbones import build_backbone
from benchmark.engine.feature_cache import FeatureCache
from scenarios.folder import FolderSegmentationDataset
from scenarios.stream import collate_samples, to_avalanche


@pytest.fixture
def strategy_and_view(tmp_path, tiny_domain):
    """A finetune_decoder strategy (random sam_small) and a cached view of one tiny domain."""
    from benchmark.core.registry import get_method

    torch.manual_seed(0)
    backbone = build_backbone("sam_small", checkpoint=None)
    data = FolderSegmentationDataset(tiny_domain(tmp_path / "d0", split="train", n=4, size=48),
                                     "train", image_size=256, domain_index=0)
    cls = get_method("finetune_decoder")
    view = FeatureCache(tmp_path / "cache", progress=False).view(backbone, data, cls.tap)
    strategy = cls(backbone=copy.deepcopy(backbone), domain_names=["a"], n_trained=1,
                   hparams={"epochs": 1, "batch_size": 2}, seed=0)
    return strategy, view


def _dtypes_seen(module: torch.nn.Module) -> list:
    """Output dtypes of every nn.Linear under ``module``, appended as they run."""
    seen = []
    for sub in module.modules():
        if isinstance(sub, torch.nn.Linear):
            sub.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    return seen


def test_bf16_autocast_runs_training_and_prediction_in_bf16(strategy_and_view):
    strategy, view = strategy_and_view
    strategy.enable_precision("bf16")
    seen = _dtypes_seen(strategy.parts)
    assert len(seen) == 0 and any(True for _ in strategy.trainable_parameters())

    strategy.learn_domain(to_avalanche([view], [view]).train_stream[0], 0)
    assert seen and set(seen) == {torch.bfloat16}  # the trained decoder ran under autocast
    assert all(p.dtype == torch.float32 for p in strategy.parts.parameters())  # fp32 master weights
    assert np.isfinite(strategy.loss_history).all()

    seen.clear()
    logits = strategy.predict(collate_samples([view[0], view[1]]))
    assert set(seen) == {torch.bfloat16} and logits.dtype == torch.float32


def test_fp32_stays_fp32_and_channels_last_converts_batches(strategy_and_view):
    strategy, view = strategy_and_view
    strategy.enable_precision("fp32", channels_last=True)
    seen = _dtypes_seen(strategy.parts)
    batch = collate_samples([view[0], view[1]])
    four_d = [v for v in batch["features"].values() if v.dim() == 4]
    assert four_d, "the decoder tap should cache 4-D image embeddings"
    logits = strategy.predict(batch)
    assert set(seen) == {torch.float32} and logits.dtype == torch.float32
    strategy.mbatch = batch
    strategy._unpack_minibatch()  # what Avalanche calls on every training batch
    assert all(v.is_contiguous(memory_format=torch.channels_last)
               for v in strategy.mbatch["features"].values() if v.dim() == 4)
