"""The small SAM (benchmark/backbones/small_sam/): its one configuration, the generic distribution, the
pretraining loss, resumable training, the export and the shipped weights."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.backbones.small_sam import evaluate as E
from benchmark.backbones.small_sam import pretrain as P
from benchmark.backbones.small_sam.generic import GenericDataset, generate_scene, generic_item
from scenarios.fileio import sha256_file

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "checkpoint" / "sam_small_synthetic.safetensors"


def tiny_sam(size: int = 64) -> nn.Module:
    """A 2-block SAM from the official classes, small enough for CPU tests."""
    from segment_anything.modeling import (ImageEncoderViT, MaskDecoder, PromptEncoder, Sam,
                                           TwoWayTransformer)

    return Sam(
        image_encoder=ImageEncoderViT(img_size=size, patch_size=16, embed_dim=32, depth=2, num_heads=2,
                                      out_chans=32, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6),
                                      use_rel_pos=True, window_size=2, global_attn_indexes=(1,)),
        prompt_encoder=PromptEncoder(embed_dim=32, image_embedding_size=(size // 16, size // 16),
                                     input_image_size=(size, size), mask_in_chans=4),
        mask_decoder=MaskDecoder(num_multimask_outputs=3,
                                 transformer=TwoWayTransformer(depth=1, embedding_dim=32, mlp_dim=64, num_heads=2),
                                 transformer_dim=32, iou_head_depth=2, iou_head_hidden_dim=32),
    )


def test_generic_items_are_deterministic_and_valid():
    a, b = generic_item(7, 3), generic_item(7, 3)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    assert torch.equal(a["points"], b["points"])
    assert not torch.equal(generic_item(7, 4)["image"], a["image"])
    for i in range(6):
        it = generic_item(11, i)
        assert it["image"].dtype == torch.uint8 and it["image"].shape == (3, 256, 256)
        assert set(torch.unique(it["mask"]).tolist()) <= {0.0, 1.0} and it["mask"].sum() > 0
        cols, rows = it["points"].long().unbind(1)
        assert it["points"].shape == (3, 2) and bool((it["mask"][rows, cols] == 1).all())
    assert len(GenericDataset(5, 0)) == 5


def test_scene_masks_are_disjoint_after_occlusion():
    scene = generate_scene(np.random.default_rng(5), 128)
    total = np.sum([m.astype(int) for m in scene.masks], axis=0)
    assert len(scene.masks) >= 1 and total.max() <= 1


def test_training_prompts_follow_sam_sampling():
    cfg = P.PretrainConfig()
    kinds = set()
    for i in range(20):
        it = P.training_item(0, i, cfg)
        assert 1 <= len(it["targets"]) <= cfg.targets_per_image
        masks = [t["mask"] for t in it["targets"]]
        assert all(float((a * b).sum()) == 0 for j, a in enumerate(masks) for b in masks[j + 1:])  # distinct objects
        for t in it["targets"]:
            mask = t["mask"]
            if t["box"] is not None:
                kinds.add("box")
                x0, y0, x1, y1 = t["box"].tolist()
                assert 0 <= x0 < x1 <= 256 and 0 <= y0 < y1 <= 256 and not t["multimask"]
            else:
                labels = t["point_labels"]
                cols, rows = t["points"].long().unbind(1)
                assert bool((mask[rows, cols] == labels).all())  # foreground inside, background outside
                assert t["multimask"] == (len(labels) == 1)
                kinds.add("single" if t["multimask"] else "multi")
    assert kinds == {"box", "single", "multi"}
    a, b = P.training_item(0, 5, cfg), P.training_item(0, 5, cfg)
    assert torch.equal(a["image"], b["image"]) and len(a["targets"]) == len(b["targets"])
    one = P.training_item(0, 5, P.PretrainConfig(targets_per_image=1))
    assert len(one["targets"]) == 1


def test_prompts_per_target_repeats_each_object_with_fresh_prompts():
    one, three = P.PretrainConfig(), P.PretrainConfig(prompts_per_target=3)
    for i in range(6):
        a, b = P.training_item(0, i, one), P.training_item(0, i, three)
        assert torch.equal(a["image"], b["image"]) and len(b["targets"]) == 3 * len(a["targets"])
        # the first object is the same; its three prompts are drawn independently
        assert all(torch.equal(t["mask"], b["targets"][0]["mask"]) for t in b["targets"][:3])
        assert torch.equal(a["targets"][0]["mask"], b["targets"][0]["mask"])
    prompts = lambda t: (t["box"] if t["box"] is not None else t["points"]).tolist()  # noqa: E731
    items = [P.training_item(0, i, three)["targets"][:3] for i in range(6)]
    assert any(len({str(prompts(t)) for t in group}) > 1 for group in items)
    # the default keeps the single-prompt stream (and the shipped checkpoint's command) unchanged
    assert P.PretrainConfig().prompts_per_target == 1


def test_pick_targets_draws_distinct_visible_objects():
    from benchmark.backbones.small_sam.generic import MIN_VISIBLE_FRACTION, pick_targets

    scene = generate_scene(np.random.default_rng(3), 128)
    big = [m for m in scene.masks if m.sum() >= MIN_VISIBLE_FRACTION * 128 * 128]
    chosen = pick_targets(scene, np.random.default_rng(0), 10)
    assert len(chosen) == max(1, len(big))
    assert len({m.tobytes() for m in chosen}) == len(chosen)
    with pytest.raises(ValueError, match="k must be positive"):
        pick_targets(scene, np.random.default_rng(0), 0)


def test_batched_loss_picks_the_best_of_three_for_single_points():
    """The vectorised loss back-propagates token 0 for multi-prompt targets and the best of tokens 1-3
    for a single point, as SAM's multimask_output does."""
    torch.manual_seed(0)
    sam = tiny_sam()
    cfg = P.PretrainConfig(image_size=64, targets_per_image=3)
    batch = [P.training_item(0, i, cfg, 64) for i in range(3)]
    loss, logs = P.batch_loss(sam, batch)
    assert loss.ndim == 0 and torch.isfinite(loss) and 0 <= logs["miou"] <= 1
    # the same loss computed a target at a time, by the SAM rule
    targets = [t for it in batch for t in it["targets"]]
    index = [i for i, it in enumerate(batch) for _ in it["targets"]]
    with torch.no_grad():
        embeds = sam.image_encoder(sam.preprocess(torch.stack([it["image"] for it in batch]).float()))
        low, iou = P.decode_batch(sam, embeds, targets, index)
        logits = torch.nn.functional.interpolate(low, (64, 64), mode="bilinear", align_corners=False)
        expected = []
        for j, t in enumerate(targets):
            tokens = [1, 2, 3] if t["multimask"] else [0]
            focal, dice = P.mask_losses(logits[j, tokens], t["mask"])
            per = P.FOCAL_WEIGHT * focal + P.DICE_WEIGHT * dice
            actual = P.mask_iou(logits[j, tokens], t["mask"])
            expected.append(per.min() + ((iou[j, tokens] - actual) ** 2).mean())
    assert torch.allclose(loss.detach(), torch.stack(expected).mean(), rtol=1e-5)


def test_dice_weight_scales_the_dice_term():
    torch.manual_seed(0)
    sam = tiny_sam()
    cfg = P.PretrainConfig(image_size=64, targets_per_image=2)
    batch = [P.training_item(0, i, cfg, 64) for i in range(2)]
    with torch.no_grad():
        losses = [float(P.batch_loss(sam, batch, dice_weight=w)[0]) for w in (0.0, 1.0, 5.0)]
    assert losses[0] < losses[1] < losses[2]


def test_loss_terms():
    target = torch.zeros(8, 8)
    target[2:6, 2:6] = 1
    good = (target * 20 - 10)[None]
    bad = -good
    fg, dg = P.mask_losses(good, target)
    fb, db = P.mask_losses(bad, target)
    assert fg < fb and dg < 0.05 and db > 0.95
    assert float(P.mask_iou(good, target)) == 1.0 and float(P.mask_iou(bad, target)) == 0.0


def test_a_few_steps_reduce_the_loss():
    torch.manual_seed(0)
    sam = tiny_sam()
    cfg = P.PretrainConfig(image_size=64, lr=2e-3, warmup=1, steps=12)
    batch = [P.training_item(0, i, cfg, 64) for i in range(2)]
    opt, _ = P.make_optimiser(sam, cfg)  # two scenes, up to 6 prompted objects each
    losses = []
    for _ in range(12):
        loss, _ = P.batch_loss(sam, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0]


def test_save_resume_gives_the_same_state(tmp_path):
    cfg = P.PretrainConfig(image_size=64, batch_size=2, steps=3, warmup=1)

    torch.manual_seed(0)
    straight, done = P.train(cfg, sam=tiny_sam(), progress=False)
    assert done == 3

    state = tmp_path / "state.pt"
    torch.manual_seed(0)
    _, done = P.train(cfg, sam=tiny_sam(), state_path=state, minutes=1e-9, progress=False)  # stops after 1 step
    assert done == 1 and state.is_file()
    torch.manual_seed(123)  # resume must not depend on the fresh model's init
    resumed, done = P.train(cfg, sam=tiny_sam(), state_path=state, resume=True, progress=False)
    assert done == 3
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k

    with pytest.raises(ValueError, match="batch_size"):
        P.train(P.PretrainConfig(image_size=64, batch_size=3, steps=3), sam=tiny_sam(), state_path=state,
                resume=True, progress=False)
    with pytest.raises(ValueError, match="prompts_per_target"):
        P.train(P.PretrainConfig(image_size=64, batch_size=2, steps=3, prompts_per_target=2), sam=tiny_sam(),
                state_path=state, resume=True, progress=False)
    with pytest.raises(FileNotFoundError):
        P.train(cfg, sam=tiny_sam(), state_path=tmp_path / "missing.pt", resume=True, progress=False)


def test_export_is_small_and_reloads(tmp_path):
    sam = tiny_sam()
    out = tmp_path / "tiny.safetensors"
    digest = P.export_safetensors(sam, out)
    assert digest == sha256_file(out) and len(digest) == 64
    from safetensors.torch import load_file
    fresh = tiny_sam()
    fresh.load_state_dict(load_file(str(out)))
    assert torch.equal(fresh.mask_decoder.iou_token.weight, sam.mask_decoder.iou_token.weight)


@pytest.mark.skipif(not SHIPPED.is_file(), reason="shipped small SAM checkpoint not present")
def test_shipped_checkpoint_segments_held_out_generic_scenes():
    from benchmark.backbones import build_backbone

    assert SHIPPED.stat().st_size <= 25e6
    backbone = build_backbone("sam_small", checkpoint=SHIPPED)
    assert E.evaluate_generic(backbone, n=16) > 0.5


def test_the_small_sam_configuration_is_written_once():
    """The backbone registry's sam_small and the pretraining build the same model: same modules,
    parameter names and shapes, and (created in the same order) the same random init under a seed."""
    from benchmark.backbones import build_backbone, model_info
    from benchmark.backbones.small_sam import CHECKPOINT_FILE, IMAGE_SIZE

    torch.manual_seed(0)
    registry = build_backbone("sam_small", checkpoint=None)
    torch.manual_seed(0)
    trainable = P.build_small_sam()
    a, b = registry.sam.state_dict(), trainable.state_dict()
    assert list(a) == list(b) and len(a) > 100
    assert all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)
    assert [type(m).__name__ for m in registry.sam.modules()] == [type(m).__name__ for m in trainable.modules()]
    assert trainable.training and all(p.requires_grad for p in trainable.parameters())
    assert registry.image_size == IMAGE_SIZE == P.PretrainConfig().image_size == model_info("sam_small").image_size
    assert model_info("sam_small").checkpoint_file == CHECKPOINT_FILE == SHIPPED.name
    assert sum(p.numel() for p in trainable.parameters()) == 6_494_464  # checkpoint/README.md: 6.49 M


def test_one_hard_iou_for_training_evaluation_and_scores():
    """The pretraining's mask IoU, the benchmark's image_scores and sam_loss's IoU are one function."""
    from benchmark.core.losses import hard_iou
    from benchmark.reporting.metrics import image_scores

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 32, 32, generator=g)
    masks = (torch.rand(5, 32, 32, generator=g) > 0.5).float()
    masks[0] = 0  # empty mask, non-empty prediction
    logits[1] = -1  # empty prediction
    masks[2], logits[2] = 0, -1  # both empty: a perfect answer
    iou = hard_iou(logits, masks)
    assert torch.equal(P.mask_iou(logits, masks), iou) and torch.equal(image_scores(logits, masks)["iou"], iou)
    assert iou[:3].tolist() == [0.0, 0.0, 1.0]
    # a broadcast target and a single mask
    assert torch.equal(P.mask_iou(logits[:2], masks[3]), hard_iou(logits[:2], masks[3].expand(2, 32, 32)))
    assert P.mask_iou(logits[3], masks[3]).shape == ()


def test_pretraining_losses_are_the_core_losses_class_balanced():
    from benchmark.core.losses import dice_loss, focal_loss

    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 16, 16, generator=g) * 3
    masks = (torch.rand(4, 16, 16, generator=g) > 0.6).float()
    focal, dice = P.mask_losses(logits, masks, alpha=0.3)
    assert torch.equal(focal, focal_loss(logits, masks, 0.3, P.FOCAL_GAMMA, balanced=True))
    assert torch.equal(dice, dice_loss(logits, masks))
    # class-balanced: swapping foreground and background swaps alpha and 1 - alpha
    assert torch.allclose(focal_loss(logits, masks, 0.3, balanced=True),
                          focal_loss(-logits, 1 - masks, 0.7, balanced=True))
    assert not torch.allclose(focal, focal_loss(logits, masks, 0.3))  # the SAMCL reference weighs every pixel
