"""Parity with the SAMCL reference (../shared/fixtures/samcl_golden, see its README).

Fast: heatmaps and selector logits. Slow (full ViT-B / Hiera-T at 1024 px): pooled taps, logits
with the released module and without it, and the routed path (tap, then resume) = full forward.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from methods.samcl.augmodule import ModuleSet
from methods.samcl.heatmap import point_heatmap
from methods.samcl.official import load_official_module, load_official_selector
from methods.samcl.selector import pooled_tap

CASES = ["sam1_kvasir", "sam1_isic", "sam1_kvasir_pospert", "sam2_kvasir", "sam2_isic", "sam2_kvasir_pospert"]
# the forward goldens with each attention path (SAM2 has only its own, already SDPA)
FORWARD = [(c, "official") for c in CASES] + [(c, path) for path in ("sdpa", "folded")
                                               for c in CASES if c.startswith("sam1")]
ATOL = 1e-4


def _golden(golden_root, case):
    return dict(np.load(golden_root / f"{case}.npz"))


def _folder(case):
    return "SAM1" if case.startswith("sam1") else "SAM2"


def _module_file(official_root, case):
    return official_root / _folder(case) / ("ISIC.pth" if "isic" in case else "Kvasir.pth")


@pytest.mark.parametrize("case", CASES)
def test_heatmap_matches_reference(golden_root, case):
    g = _golden(golden_root, case)
    hm = point_heatmap(torch.from_numpy(g["points"])[None], grid=64, image_size=1024)
    assert hm.dtype == torch.float32
    assert torch.equal(hm, torch.from_numpy(g["heatmap"]))


@pytest.mark.parametrize("case", CASES)
def test_selector_logits_from_stored_vector(golden_root, official_root, case):
    g = _golden(golden_root, case)
    selector = load_official_selector(official_root / _folder(case) / "Module_Selector.pth")
    pooled = g["pooled_block6"] if case.startswith("sam1") else g["pooled_block5"]
    logits = selector(torch.from_numpy(pooled)[None])[0]
    torch.testing.assert_close(logits, torch.from_numpy(g["selector_logits"]), atol=ATOL, rtol=0)
    assert int(logits.argmax()) == int(g["selector_argmax"])


def _backbone(case, attention="official"):
    from benchmark.backbones import build_backbone

    torch.manual_seed(0)
    bb = build_backbone("sam_vit_b" if case.startswith("sam1") else "sam2.1_hiera_t", None)
    bb.set_attention(attention)
    if "pospert" in case:
        names = ("pos_embed", "rel_pos_h", "rel_pos_w") if case.startswith("sam1") else ("pos_embed", "pos_embed_window")
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for n, p in bb.sam.named_parameters():
                if n.split(".")[-1] in names:
                    p.copy_(0.02 * torch.randn(p.shape, generator=g))
    return bb


def _close(actual, expected):
    torch.testing.assert_close(actual, torch.from_numpy(expected), atol=ATOL, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("case,attention", FORWARD)
def test_forward_matches_reference(golden_root, official_root, case, attention):
    g = _golden(golden_root, case)
    bb = _backbone(case, attention)
    module = load_official_module(_module_file(official_root, case))
    ms = ModuleSet(module.config)
    ms.add("domain", module)
    ms.attach(bb.encoder_blocks)
    tap = "block6" if case.startswith("sam1") else "block5"
    image = torch.from_numpy(g["image_1024"]).permute(2, 0, 1)[None]
    points = torch.from_numpy(g["points"])[None]
    labels = torch.from_numpy(g["point_labels"]).float()[None]
    with torch.no_grad():
        feats = bb.features_at(image, tap)
        stored = {k: v.clone() for k, v in feats.items()}
        _close(pooled_tap(feats["tokens"])[0], g["pooled_block6" if tap == "block6" else "pooled_block5"])
        selector = load_official_selector(official_root / _folder(case) / "Module_Selector.pth")
        _close(selector(pooled_tap(feats["tokens"]))[0], g["selector_logits"])

        low, iou = bb.decode(bb.features_from(feats, tap), points, labels)
        _close(low, g["low_res_logits_vanilla"])
        _close(iou, g["iou_pred_vanilla"])

        with ms.active("domain", points):
            routed = bb.decode(bb.features_from(feats, tap, pre_neck=ms.pre_neck, post_neck=ms.post_neck),
                               points, labels)
            full = bb.decode(bb.encode(image, pre_neck=ms.pre_neck, post_neck=ms.post_neck), points, labels)
        _close(routed[0], g["low_res_logits_samcl"])
        _close(routed[1], g["iou_pred_samcl"])
        _close(routed[0], g["low_res_logits_samcl_testpy_route"])
        assert torch.equal(routed[0], full[0])  # tap + resume = full forward
        for k, v in stored.items():  # resuming must not modify the stored tap
            assert torch.equal(feats[k], v), k


@pytest.mark.parametrize("case,domain", [("sam1_kvasir", "Kvasir"), ("sam1_isic", "ISIC")])
def test_loader_reproduces_reference_input(golden_root, samples_root, case, domain):
    """Our folder loader gives the reference's image_1024 and points for the sample image."""
    from scenarios.folder import FolderSegmentationDataset

    g = _golden(golden_root, case)
    ds = FolderSegmentationDataset(samples_root / domain, "test", image_size=1024, domain_index=0)
    i = ds.names.index("cju1amqw6p8pw0993d9gc5crl.jpg" if domain == "Kvasir" else "ISIC_0000003.jpg")
    assert torch.equal(ds.load_image(i), torch.from_numpy(g["image_1024"]).permute(2, 0, 1))
    target = ds.load_target(i)
    assert torch.equal(target["points"], torch.from_numpy(g["points"]))
    assert torch.equal(target["point_labels"], torch.from_numpy(g["point_labels"]).float())
