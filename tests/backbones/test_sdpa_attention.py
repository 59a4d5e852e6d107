"""The SDPA attention paths (run option ``attention``: ``sdpa``, the bias as a mask, and
``folded``, the bias folded into the queries and keys) against the official SAM ViT attention.

fp32 on CPU, max abs difference <= 1e-5 on block outputs and mask logits: windowed (padded) and
global blocks, plain, with peft LoRA on ``qkv`` and with SAMCL's AugModule active; sam_small and a
randomly initialised ViT-B from the official builder (blocks at 24x24 tokens here; the full 1024 px
run is slow). SAM2's Hiera attention already calls ``F.scaled_dot_product_attention``.
"""
from __future__ import annotations

import copy

import pytest
import torch
from segment_anything.modeling.image_encoder import Attention, add_decomposed_rel_pos

from benchmark.backbones import build_backbone
from benchmark.backbones.base import ATTENTION_PATHS, resolve_attention
from benchmark.backbones.sam1 import FoldedAttention, SdpaAttention, folded_qkv, rel_pos_bias, sam_attention
from methods.baselines._lora_common import activate, inject_lora
from methods.samcl.augmodule import ModuleSet, config_for_backbone

TOL = 1e-5
PATHS = ("sdpa", "folded")  # each against the official attention
POSITIONAL = ("pos_embed", "rel_pos_h", "rel_pos_w")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def randomise(model: torch.nn.Module, names=POSITIONAL, std: float = 0.02, seed: int = 1) -> None:
    """Non-zero values for parameters named ``names`` (rel-pos tables start at zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.split(".")[-1] in names:
                p.copy_(std * torch.randn(p.shape, generator=g))


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def both_paths(model: torch.nn.Module, fn, path: str):
    """``fn()`` with the official attention, then with ``path`` (``model`` is left on official)."""
    sam_attention(model, "official")
    official = fn()
    sam_attention(model, path)
    try:
        return official, fn()
    finally:
        sam_attention(model, "official")


def block_outputs(blocks, x: torch.Tensor) -> list[torch.Tensor]:
    outs = []
    with torch.no_grad():
        for blk in blocks:
            x = blk(x)
            outs.append(x)
    return outs


# ------------------------------------------------------------------------------ the pieces
def test_bias_is_the_official_decomposed_rel_pos():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, 5 * 7, 8, generator=g)
    rel_h, rel_w = torch.randn(9, 8, generator=g), torch.randn(13, 8, generator=g)  # 9 != 2*5-1: resized
    official = add_decomposed_rel_pos(torch.zeros(6, 35, 35), q.reshape(6, 35, 8), rel_h, rel_w, (5, 7), (5, 7))
    assert max_diff(rel_pos_bias(q, rel_h, rel_w, (5, 7)), official.view(2, 3, 35, 35)) <= 1e-6


def test_folded_dot_products_are_the_biased_logits():
    """q' . k' (scale 1) = scale * q . k + the official bias; one head dimension, padded to 8s."""
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(3, 2, 3, 5 * 7, 8, generator=g).unbind(0)
    rel_h, rel_w = torch.randn(9, 8, generator=g), torch.randn(13, 8, generator=g)
    qa, ka, va = folded_qkv(q, k, v, rel_h, rel_w, (5, 7), 0.3)
    assert qa.shape[-1] == ka.shape[-1] == va.shape[-1] == 24  # 8 + 5 + 7 = 20, padded to 24
    logits = 0.3 * q @ k.transpose(-2, -1) + rel_pos_bias(q, rel_h, rel_w, (5, 7))
    assert max_diff(qa @ ka.transpose(-2, -1), logits) <= 1e-5
    assert torch.equal(va[..., :8], v) and not va[..., 8:].any()


@pytest.mark.parametrize("path,cls", [("sdpa", SdpaAttention), ("folded", FoldedAttention)])
def test_switching_keeps_parameters_and_hooks(path, cls):
    attn = Attention(16, num_heads=2, use_rel_pos=True, input_size=(4, 4))
    state = {k: v.clone() for k, v in attn.state_dict().items()}
    calls = []
    attn.register_forward_hook(lambda *_: calls.append(1))
    assert sam_attention(attn, path) == 1 and type(attn) is cls
    attn(torch.randn(1, 4, 4, 16))
    assert calls == [1] and all(torch.equal(v, attn.state_dict()[k]) for k, v in state.items())
    sam_attention(attn, "official")
    assert type(attn) is Attention


def test_folded_without_rel_pos_is_plain_attention():
    torch.manual_seed(0)
    attn = Attention(16, num_heads=2, use_rel_pos=False)
    x = torch.randn(2, 4, 4, 16)
    with torch.no_grad():
        ref, new = both_paths(attn, lambda: attn(x), "folded")
    assert max_diff(ref, new) <= TOL


def test_resolve_attention():
    assert ATTENTION_PATHS == ("auto", "official", "sdpa", "folded")
    assert resolve_attention("auto", 64) == "folded"     # SAM ViT-B/L/H at 1024 px
    assert resolve_attention("auto", 16) == "official"   # sam_small at 256 px
    assert resolve_attention("sdpa", 16) == "sdpa" and resolve_attention("official", 64) == "official"
    with pytest.raises(ValueError, match="attention must be one of auto, official, sdpa, folded, got 'flash'"):
        resolve_attention("flash")


# ------------------------------------------------------------------------------ sam_small
@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    bb = build_backbone("sam_small")
    randomise(bb.sam)
    return bb


@pytest.fixture(scope="module")
def small_batch():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 3, 256, 256), generator=g, dtype=torch.uint8)
    points = torch.rand(2, 3, 2, generator=g) * 256
    return images, points, torch.tensor([[1.0, 1.0, 0.0]] * 2)


@pytest.mark.parametrize("path", PATHS)
def test_small_blocks_and_logits(small, small_batch, path):
    """All 12 blocks (windows of 6 padded to 18 tokens, global in 2, 5, 8, 11) and the logits."""
    assert small.set_attention(path) == path and small.attention == path
    cls = {"sdpa": SdpaAttention, "folded": FoldedAttention}[path]
    assert all(type(b.attn) is cls for b in small.encoder_blocks)
    assert small.set_attention("auto") == "official"  # 16x16 tokens: below FOLDED_FROM_GRID
    x = small._embed(small_batch[0]).detach()
    ref, new = both_paths(small.sam, lambda: block_outputs(small.encoder_blocks, x), path)
    diffs = [max_diff(a, b) for a, b in zip(ref, new)]
    assert max(diffs) <= TOL, diffs
    with torch.no_grad():
        ref, new = both_paths(small.sam, lambda: small(*small_batch), path)
    assert max_diff(ref[0], new[0]) <= TOL and max_diff(ref[1], new[1]) <= TOL


def _lora(backbone, blocks):
    layers = inject_lora(backbone, blocks, ["qkv"], rank=4, alpha=4.0, adapter="t0")
    activate(layers, ["t0"], ["t0"])
    for layer in layers.values():  # peft starts B at zero: make the adapter do something
        torch.nn.init.normal_(layer.lora_B["t0"].weight, std=0.05)
    return layers


@pytest.mark.parametrize("path", PATHS)
def test_small_with_lora_on_qkv_logits_and_gradients(small_batch, path):
    """LoRA on qkv of a windowed (7) and a global (8) block: logits and the LoRA gradients."""
    torch.manual_seed(0)
    bb = build_backbone("sam_small")
    randomise(bb.sam)
    layers = _lora(bb, [7, 8])
    feats = bb.features_at(small_batch[0], "block6")

    def step():
        bb.zero_grad(set_to_none=True)
        low, _ = bb.decode(bb.features_from(feats, "block6"), *small_batch[1:])
        low.square().mean().backward()
        return low.detach(), [copy.deepcopy(l.lora_A["t0"].weight.grad) for l in layers.values()]

    (ref, ref_grads), (new, new_grads) = both_paths(bb.sam, step, path)
    assert max_diff(ref, new) <= TOL
    scale = max(float(g.abs().max()) for g in ref_grads)
    assert max(max_diff(a, b) for a, b in zip(ref_grads, new_grads)) <= TOL * max(1.0, scale)


@pytest.mark.parametrize("path", PATHS)
def test_small_with_augmodule(small, small_batch, path):
    """SAMCL's AugModule hooks on blocks 7-11 (windowed with the padded 18x18 map, and global)."""
    images, points, labels = small_batch
    ms = ModuleSet(config_for_backbone(small, rank=4))
    module = ms.add("d")
    randomise(module, names=("weight", "bias"), std=0.1, seed=2)
    ms.attach(small.encoder_blocks)
    feats = small.features_at(images, "block6")
    try:
        def run():
            with torch.no_grad(), ms.active("d", points):
                enc = small.features_from(feats, "block6", pre_neck=ms.pre_neck, post_neck=ms.post_neck)
                return small.decode(enc, points, labels)
        ref, new = both_paths(small.sam, run, path)
    finally:
        ms.detach()
    with torch.no_grad():
        vanilla = small.decode(small.features_from(feats, "block6"), points, labels)[0]
    assert max_diff(ref[0], vanilla) > 1e-2  # the module really changes the logits
    assert max_diff(ref[0], new[0]) <= TOL and max_diff(ref[1], new[1]) <= TOL


# ------------------------------------------------------------------------------ ViT-B
@pytest.fixture(scope="module")
def vit_b():
    torch.manual_seed(0)
    bb = build_backbone("sam_vit_b")  # sam_model_registry["vit_b"], random weights
    randomise(bb.sam)
    return bb


@pytest.mark.parametrize("path", PATHS)
def test_vit_b_blocks_at_24x24_tokens(vit_b, path):
    """All 12 ViT-B blocks on 24x24 tokens (windows of 14 padded to 28, global blocks with the
    rel-pos tables resized by the official get_rel_pos), then blocks 7-11 with LoRA on qkv."""
    x = torch.randn(1, 24, 24, 768, generator=torch.Generator().manual_seed(0))
    ref, new = both_paths(vit_b.sam, lambda: block_outputs(vit_b.encoder_blocks, x), path)
    assert max(max_diff(a, b) for a, b in zip(ref, new)) <= TOL
    bb = copy.deepcopy(vit_b)
    _lora(bb, [7, 8, 9, 10, 11])
    ref_lora, new_lora = both_paths(bb.sam, lambda: block_outputs(bb.encoder_blocks[7:], ref[6]), path)
    assert max_diff(ref_lora[-1], ref[-1]) > 1e-3  # LoRA is active
    assert max(max_diff(a, b) for a, b in zip(ref_lora, new_lora)) <= TOL


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS)
def test_vit_b_logits_at_1024(vit_b, path):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (1, 3, 1024, 1024), generator=g, dtype=torch.uint8)
    points, labels = torch.rand(1, 3, 2, generator=g) * 1024, torch.tensor([[1.0, 1.0, 0.0]])
    with torch.no_grad():
        ref, new = both_paths(vit_b.sam, lambda: vit_b(images, points, labels), path)
    assert max_diff(ref[0], new[0]) <= TOL and max_diff(ref[1], new[1]) <= TOL


# ------------------------------------------------------------------------------ SAM2
def test_sam2_hiera_attention_already_calls_sdpa(monkeypatch):
    """sam2's MultiScaleAttention computes attention with F.scaled_dot_product_attention (no
    rel-pos bias), so ``attention`` has nothing to switch on SAM2 (docs/scaling.md)."""
    import sam2.modeling.backbones.hieradet as hieradet

    calls = []
    real = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(hieradet.F, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    attn = hieradet.MultiScaleAttention(dim=32, dim_out=32, num_heads=2)
    attn(torch.randn(1, 4, 4, 32))
    assert calls == [1]


@pytest.mark.slow
def test_sam2_backbone_keeps_its_attention():
    torch.manual_seed(0)
    bb = build_backbone("sam2.1_hiera_t")
    state = {k: v.clone() for k, v in bb.state_dict().items()}
    for path in ("official", "sdpa", "folded", "auto"):
        assert bb.set_attention(path) == "sdpa" and bb.attention == "sdpa"
    with pytest.raises(ValueError, match="attention must be one of"):
        bb.set_attention("flash")
    assert all(torch.equal(v, bb.state_dict()[k]) for k, v in state.items())
