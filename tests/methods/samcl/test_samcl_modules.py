"""AugModule / ModuleSet on the small SAM: zero-init = vanilla, hooks, quirk options, counts."""
from __future__ import annotations

import pytest
import torch

from methods.samcl.augmodule import (AugModule, ModuleSet, config_for_backbone, count_parameters,
                                     hiera_t_config, vit_config)
from methods.samcl.heatmap import point_heatmap


@pytest.fixture(scope="module")
def small():
    from benchmark.backbones import build_backbone

    torch.manual_seed(0)
    return build_backbone("sam_small", None)


def _inputs(bb, b=2):
    g = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (b, 3, bb.image_size, bb.image_size), generator=g, dtype=torch.uint8)
    points = torch.rand(b, 3, 2, generator=g) * (bb.image_size - 1)
    labels = torch.ones(b, 3)
    return images, points, labels


def _run(bb, ms, feats, points, labels):
    enc = bb.features_from(feats, "block6", pre_neck=ms.pre_neck, post_neck=ms.post_neck)
    return bb.decode(enc, points, labels)


def _randomise(module: AugModule, seed: int = 1) -> AugModule:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return module


def test_config_for_small_backbone(small):
    cfg = config_for_backbone(small)
    assert cfg.width == 192 and cfg.blocks == (7, 8, 9, 10, 11) and cfg.neck_dims == (192, 128)
    assert cfg.grid == 16 and cfg.image_size == 256


def test_untrained_module_is_vanilla_bit_for_bit(small):
    images, points, labels = _inputs(small)
    ms = ModuleSet(config_for_backbone(small)).attach(small.encoder_blocks)
    ms.add("a")
    with torch.no_grad():
        feats = small.features_at(images, "block6")
        vanilla = small.decode(small.features_from(feats, "block6"), points, labels)
        with ms.active("a", points):
            adapted = _run(small, ms, feats, points, labels)
            full = small.decode(small.encode(images, pre_neck=ms.pre_neck, post_neck=ms.post_neck),
                                points, labels)
    assert torch.equal(adapted[0], vanilla[0]) and torch.equal(adapted[1], vanilla[1])
    assert torch.equal(full[0], vanilla[0])
    ms.detach()


def test_active_module_changes_output_and_deactivates(small):
    images, points, labels = _inputs(small)
    ms = ModuleSet(config_for_backbone(small)).attach(small.encoder_blocks)
    _randomise(ms.add("a"))
    with torch.no_grad():
        feats = small.features_at(images, "block6")
        vanilla = _run(small, ms, feats, points, labels)
        with ms.active("a", points):
            adapted = _run(small, ms, feats, points, labels)
            with ms.active(None):
                nested = _run(small, ms, feats, points, labels)
            full = small.decode(small.encode(images, pre_neck=ms.pre_neck, post_neck=ms.post_neck),
                                points, labels)
        after = _run(small, ms, feats, points, labels)
    assert (adapted[0] - vanilla[0]).abs().max() > 1e-3
    assert torch.equal(nested[0], vanilla[0]) and torch.equal(after[0], vanilla[0])
    torch.testing.assert_close(full[0], adapted[0], atol=1e-5, rtol=0)
    # batched run = each image on its own (the map is per image, windows per image)
    with torch.no_grad(), ms.active("a", points[:1]):
        one = _run(small, ms, {"tokens": feats["tokens"][:1]}, points[:1], labels[:1])
    torch.testing.assert_close(one[0], adapted[0][:1], atol=1e-5, rtol=0)
    ms.detach()
    with torch.no_grad():
        assert torch.equal(small.decode(small.encode(images), points, labels)[0], vanilla[0])


def test_quirk_options_change_output(small):
    images, points, labels = _inputs(small, b=1)
    with torch.no_grad():
        feats = small.features_at(images, "block6")
    outs = {}
    for name, quirks in {"ref": {}, "aligned_neck": {"transposed_neck": False},
                         "partition": {"window_map": "partition"}}.items():
        ms = ModuleSet(config_for_backbone(small, **quirks)).attach(small.encoder_blocks)
        _randomise(ms.add("a"))
        with torch.no_grad(), ms.active("a", points):
            outs[name] = _run(small, ms, feats, points, labels)[0]
        ms.detach()
    assert (outs["ref"] - outs["aligned_neck"]).abs().max() > 1e-4
    assert (outs["ref"] - outs["partition"]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="window_map"):
        vit_config(window_map="bogus")


def test_gradients_reach_module_only(small):
    images, points, labels = _inputs(small, b=1)
    ms = ModuleSet(config_for_backbone(small)).attach(small.encoder_blocks)
    m = ms.add("a")
    with torch.no_grad():
        feats = small.features_at(images, "block6")
    with ms.active("a", points):
        low, iou = _run(small, ms, feats, points, labels)
    (low.mean() + iou.mean()).backward()
    # B and the neck linears are zero at init, so they get gradients; A needs B != 0 first.
    assert m.B[0].weight.grad is not None and m.B[0].weight.grad.abs().sum() > 0
    assert m.up_pre.weight.grad.abs().sum() > 0 and m.up_post.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in small.parameters())
    ms.detach()


def test_heatmap_small_grid():
    pts = torch.tensor([[[255.0, 0.0], [100.0, 150.0]]])
    hm = point_heatmap(pts, grid=16, image_size=256)
    assert hm.shape == (1, 1, 16, 16)
    # axis 2 is x: the point (x=100, y=150) -> cell [6, 9]; (255, 0) -> [15, 0]
    assert hm[0, 0, 6, 9] == hm[0, 0, 2:14, 2:14].max() == 255 * (60 / 256) ** 2
    assert hm[0, 0, 15, 0] > hm[0, 0, 0, 15]
    assert point_heatmap(torch.zeros(1, 0, 2), 16, 256).abs().sum() == 0


def test_parameter_counts():
    vit = AugModule(vit_config())
    assert count_parameters(vit) == 61_304
    assert count_parameters(vit, include_layernorm=True) == 61_304 + 11 * 20
    hiera = AugModule(hiera_t_config())
    assert count_parameters(hiera) == 20_856
    assert count_parameters(hiera, include_layernorm=True) == 20_856 + 9 * 20


def test_module_set_errors(small):
    ms = ModuleSet(config_for_backbone(small))
    ms.add("a")
    with pytest.raises(ValueError, match="already"):
        ms.add("a")
    with pytest.raises(KeyError, match="no AugModule"):
        ms["b"]
    with pytest.raises(RuntimeError, match="attach"):
        with ms.active("a", torch.zeros(1, 1, 2)):
            pass
    with pytest.raises(ValueError, match="config"):
        ms.add("c", AugModule(vit_config()))
