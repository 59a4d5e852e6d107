"""Backbones: tap splitting, decoding, official parity, checkpoint formats and errors."""
from __future__ import annotations

import hashlib
from pathlib import Path
import numpy as np
import pytest
import torch

from benchmark.backbones import (BACKBONES, SAMBackbone, build_backbone, list_backbones, model_info,
                                 save_official_checkpoint, weights_fingerprint)

EXACT = dict(atol=1e-5, rtol=0)
SAM_POS = ("pos_embed", "rel_pos_h", "rel_pos_w")
SAM2_POS = ("pos_embed", "pos_embed_window")


def perturb_positional(model: torch.nn.Module, names: tuple[str, ...]) -> None:
    """The golden fixtures' recipe: seed-0 init leaves positional params at zero; make them non-zero."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.split(".")[-1] in names:
                p.copy_(0.02 * torch.randn(p.shape, generator=g))


def random_batch(b: int, s: int, k: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (b, 3, s, s), generator=g, dtype=torch.uint8)
    points = torch.rand(b, k, 2, generator=g) * s
    labels = torch.ones(b, k)
    labels[:, -1] = 0
    return images, points, labels


def same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# ---------------------------------------------------------------------------------- sam_small
@pytest.fixture(scope="module")
def small() -> SAMBackbone:
    torch.manual_seed(0)
    bb = build_backbone("sam_small")
    perturb_positional(bb.sam, SAM_POS)
    return bb


@pytest.fixture(scope="module")
def small_batch():
    return random_batch(2, 256)


@pytest.fixture(scope="module")
def small_full(small, small_batch):
    with torch.no_grad():
        return small(*small_batch)


def test_registry_lists_all_names():
    assert list_backbones() == ["sam_vit_b", "sam_vit_l", "sam_vit_h", "sam_small", "sam2.1_hiera_t",
                                "sam2.1_hiera_s", "sam2.1_hiera_b+", "sam2.1_hiera_l"]
    assert model_info("sam_vit_b").source.endswith("/segment_anything/sam_vit_b_01ec64.pth")
    assert BACKBONES["sam2.1_hiera_t"].checkpoint_file == "sam2.1_hiera_tiny.pt"
    with pytest.raises(ValueError, match="unknown backbone 'sam_tiny'"):
        model_info("sam_tiny")


def test_small_shape_and_frozen(small, small_full):
    assert (small.image_size, small.embed_size, small.low_res_size) == (256, 16, 64)
    assert small.taps == ("image", *(f"block{k}" for k in range(12)), "neck")
    assert len(small.encoder_blocks) == 12 and small.encoder_blocks is small.sam.image_encoder.blocks
    assert not small.training and not small.sam.training
    assert not any(p.requires_grad for p in small.parameters())
    # the padded-window path: 16x16 tokens, window 6 (padded to 18), global blocks 2, 5, 8, 11
    assert [b.window_size for b in small.encoder_blocks] == [6, 6, 0, 6, 6, 0, 6, 6, 0, 6, 6, 0]
    low, iou = small_full
    assert low.shape == (2, 1, 64, 64) and iou.shape == (2, 1)


@pytest.mark.parametrize("tap", ["image", *(f"block{k}" for k in range(12)), "neck"])
def test_small_split_equals_full(small, small_batch, small_full, tap):
    images, points, labels = small_batch
    with torch.no_grad():
        feats = small.features_at(images, tap)
        low, iou = small.decode(small.features_from(feats, tap), points, labels)
    torch.testing.assert_close(low, small_full[0], **EXACT)
    torch.testing.assert_close(iou, small_full[1], **EXACT)


def test_small_block_tap_is_the_vit_block_output(small, small_batch):
    images = small_batch[0]
    enc = small.sam.image_encoder
    with torch.no_grad():
        x = enc.patch_embed(small.preprocess(images)) + enc.pos_embed
        for blk in enc.blocks[:7]:
            x = blk(x)
        torch.testing.assert_close(small.features_at(images, "block6")["tokens"], x, atol=0, rtol=0)
        torch.testing.assert_close(small.features_at(images, "neck")["image_embed"], enc(small.preprocess(images)),
                                   **EXACT)


def test_small_matches_official_predictor(small, small_batch):
    """SamPredictor on an S x S image (ResizeLongestSide is the identity there)."""
    from segment_anything import SamPredictor

    images, points, labels = small_batch
    predictor = SamPredictor(small.sam)
    predictor.set_image(images[0].permute(1, 2, 0).numpy())
    _, iou_ref, low_ref = predictor.predict(point_coords=points[0].numpy(), point_labels=labels[0].numpy(),
                                            multimask_output=False, return_logits=True)
    with torch.no_grad():
        low, iou = small(images[:1], points[:1], labels[:1])
    torch.testing.assert_close(low[0], torch.from_numpy(low_ref), **EXACT)
    torch.testing.assert_close(iou[0], torch.from_numpy(iou_ref), **EXACT)
    # upscale == the official postprocess at S
    up_ref = small.sam.postprocess_masks(low, (256, 256), (256, 256))
    torch.testing.assert_close(small.upscale(low), up_ref, atol=0, rtol=0)


def test_small_batched_decode_equals_per_image(small, small_batch):
    images, points, labels = small_batch
    with torch.no_grad():
        enc = small.features_at(images, "neck")
        for multimask in (False, True):
            low, iou = small.decode(enc, points, labels, multimask=multimask)
            assert low.shape == (2, 3 if multimask else 1, 64, 64)
            for i in range(2):
                low_i, iou_i = small.decode({"image_embed": enc["image_embed"][i:i + 1]}, points[i:i + 1],
                                            labels[i:i + 1], multimask=multimask)
                torch.testing.assert_close(low[i:i + 1], low_i, **EXACT)
                torch.testing.assert_close(iou[i:i + 1], iou_i, **EXACT)
    # different prompts on the same image give different masks (the prompts are really used)
    assert not torch.allclose(low[0], small.decode({"image_embed": enc["image_embed"][:1]}, points[1:],
                                                   labels[1:])[0][0])


def test_small_preprocess_is_sam_normalisation(small, small_batch):
    images = small_batch[0]
    mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
    torch.testing.assert_close(small.preprocess(images), (images.float() - mean) / std, atol=0, rtol=0)
    with pytest.raises(ValueError, match=r"\(B, 3, 256, 256\)"):
        small.preprocess(images[:, :, :128])


def test_small_hooks_and_no_input_modification(small, small_batch):
    images, points, labels = small_batch
    calls = []

    def pre_neck(x):  # in place, on purpose: the stored tap must survive it
        calls.append(tuple(x.shape))
        return x.mul_(1.5)

    def post_neck(emb):
        calls.append(tuple(emb.shape))
        return emb + 0.1

    with torch.no_grad():
        full = small.encode(images, pre_neck=pre_neck, post_neck=post_neck)["image_embed"]
        plain = small.encode(images)["image_embed"]
        assert calls == [(2, 192, 16, 16), (2, 128, 16, 16)]
        assert not torch.allclose(full, plain)
        for tap in ("block6", "block11"):
            feats = small.features_at(images, tap)
            stored = {k: v.clone() for k, v in feats.items()}
            split = small.features_from(feats, tap, pre_neck=pre_neck, post_neck=post_neck)["image_embed"]
            torch.testing.assert_close(split, full, **EXACT)
            assert all(torch.equal(feats[k], stored[k]) for k in stored)
        neck = small.features_at(images, "neck")
        torch.testing.assert_close(small.features_from(neck, "neck", post_neck=post_neck)["image_embed"],
                                   neck["image_embed"] + 0.1, atol=0, rtol=0)
        with pytest.raises(ValueError, match="pre_neck"):
            small.features_from(neck, "neck", pre_neck=pre_neck)
        with pytest.raises(ValueError, match="lack"):
            small.features_from({"image_embed": neck["image_embed"]}, "block6")
    with pytest.raises(ValueError, match="unknown tap 'block12'"):
        small.features_at(images, "block12")


def test_gradients_reach_hooks_through_frozen_backbone(small, small_batch):
    images, points, labels = small_batch
    conv = torch.nn.Conv2d(192, 192, 1)
    feats = small.features_at(images[:1], "block10")
    low, iou = small.decode(small.features_from(feats, "block10", pre_neck=lambda x: x + conv(x)),
                            points[:1], labels[:1])
    (low.mean() + iou.mean()).backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in small.parameters())


# ------------------------------------------------------------------------ checkpoints (SAM1)
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_small_checkpoint_round_trip(small, tmp_path, monkeypatch, suffix):
    path = save_official_checkpoint(small, tmp_path / f"weights{suffix}")
    if suffix == ".pth":  # the official SAM format: a plain state_dict, as _build_sam loads it
        sd = torch.load(path, weights_only=True)
        assert set(sd) == set(small.sam.state_dict())
    loaded = build_backbone("sam_small", checkpoint=path)
    assert same_state(loaded.sam, small.sam)
    assert weights_fingerprint(loaded) == hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    if suffix == ".safetensors":  # "auto" finds checkpoint/sam_small_synthetic.safetensors
        path.rename(tmp_path / "sam_small_synthetic.safetensors")
        monkeypatch.setenv("SAMCL_CHECKPOINT_DIR", str(tmp_path))
        assert same_state(build_backbone("sam_small", checkpoint="auto").sam, small.sam)


def test_fingerprint_tracks_weights(small):
    torch.manual_seed(0)
    a = build_backbone("sam_small")
    torch.manual_seed(0)
    b = build_backbone("sam_small")
    torch.manual_seed(1)
    c = build_backbone("sam_small")
    fa = weights_fingerprint(a)
    assert len(fa) == 16 and fa == weights_fingerprint(b) != weights_fingerprint(c)
    assert weights_fingerprint(small) != fa  # the positional perturbation changes it


@pytest.mark.parametrize("name,file,url", [
    ("sam_vit_b", "sam_vit_b_01ec64.pth", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"),
    ("sam2.1_hiera_t", "sam2.1_hiera_tiny.pt",
     "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_tiny.pt"),
    ("sam_small", "sam_small_synthetic.safetensors", "checkpoint/README.md"),
])
def test_missing_checkpoint_names_file_and_source(tmp_path, monkeypatch, name, file, url):
    monkeypatch.setenv("SAMCL_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.setattr("benchmark.backbones.checkpoints.SHIPPED_DIR", tmp_path / "nothing_shipped")
    with pytest.raises(FileNotFoundError) as err:
        build_backbone(name, checkpoint="auto")
    msg = str(err.value)
    assert str(tmp_path / file) in msg and url in msg and "\n" not in msg
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        build_backbone(name, checkpoint=tmp_path / "nowhere.pth")


def test_auto_falls_back_to_the_small_sam_the_package_ships(tmp_path, monkeypatch):
    """An installed package has no checkpoint/ folder: "auto" finds the shipped small SAM (in a
    checkout, a link to checkpoint/'s file, which the wheel holds as a file)."""
    from benchmark.backbones.checkpoints import SHIPPED_DIR, resolve_checkpoint

    monkeypatch.setenv("SAMCL_CHECKPOINT_DIR", str(tmp_path))
    assert resolve_checkpoint(model_info("sam_small"), "auto") == \
        SHIPPED_DIR / "sam_small_synthetic.safetensors"
    assert (SHIPPED_DIR / "sam_small_synthetic.safetensors").resolve() == \
        (Path(__file__).resolve().parents[2] / "checkpoint" / "sam_small_synthetic.safetensors").resolve()


def test_mismatching_checkpoint_is_a_clear_error(small, tmp_path):
    from safetensors.torch import save_file

    sd = {k: v.clone() for k, v in small.sam.state_dict().items()}
    del sd["mask_decoder.iou_token.weight"]
    sd["image_encoder.pos_embed"] = torch.zeros(1, 8, 8, 192)
    sd["extra.weight"] = torch.zeros(3)
    path = tmp_path / "bad.safetensors"
    save_file(sd, str(path))
    with pytest.raises(ValueError) as err:
        build_backbone("sam_small", checkpoint=path)
    msg = str(err.value)
    assert "bad.safetensors" in msg and "mask_decoder.iou_token.weight" in msg
    assert "image_encoder.pos_embed" in msg and "extra.weight" in msg and "\n" not in msg
    # SAM2 expects {"model": state_dict}
    torch.save(small.sam.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="plain.pt.*'model'"):
        build_backbone("sam2.1_hiera_t", checkpoint=tmp_path / "plain.pt")
    # a pickled module object is refused by weights_only loading, with a clear message
    torch.save({"m": torch.nn.Linear(2, 2)}, tmp_path / "pickled.pth")
    with pytest.raises(ValueError, match="pickled.pth.*weights_only=True"):
        build_backbone("sam_small", checkpoint=tmp_path / "pickled.pth")


# ---------------------------------------------------------------------------- SAM2.1 Hiera-T
@pytest.fixture(scope="module")
def hiera() -> SAMBackbone:
    torch.manual_seed(0)  # the golden fixtures' recipe (sam2_kvasir_pospert.npz)
    bb = build_backbone("sam2.1_hiera_t")
    perturb_positional(bb.sam, SAM2_POS)
    return bb


@pytest.fixture(scope="module")
def hiera_input(golden_root_or_none):
    if golden_root_or_none is not None:
        d = np.load(golden_root_or_none / "sam2_kvasir_pospert.npz")
        image = torch.from_numpy(d["image_1024"]).permute(2, 0, 1)[None].contiguous()
        return image, torch.from_numpy(d["points"])[None], torch.from_numpy(d["point_labels"]).float()[None], d
    images, points, labels = random_batch(1, 1024)
    return images, points, labels, None


@pytest.fixture(scope="module")
def golden_root_or_none(request):
    try:
        return request.getfixturevalue("golden_root")
    except pytest.skip.Exception:
        return None


@pytest.fixture(scope="module")
def hiera_full(hiera, hiera_input):
    with torch.no_grad():
        return hiera(*hiera_input[:3])


@pytest.fixture(scope="module")
def hiera_neck(hiera, hiera_input):
    with torch.no_grad():
        return hiera.features_at(hiera_input[0], "neck")


def test_hiera_full_matches_golden_reference(hiera, hiera_input, hiera_full):
    d = hiera_input[3]
    if d is None:
        pytest.skip("golden fixtures not available")
    low, iou = hiera_full
    torch.testing.assert_close(low, torch.from_numpy(d["low_res_logits_vanilla"]), **EXACT)
    torch.testing.assert_close(iou, torch.from_numpy(d["iou_pred_vanilla"]), **EXACT)


@pytest.mark.parametrize("tap", ["block5", "neck", pytest.param("block2", marks=pytest.mark.slow),
                                 pytest.param("block9", marks=pytest.mark.slow),
                                 pytest.param("block11", marks=pytest.mark.slow)])
def test_hiera_split_equals_full(hiera, hiera_input, hiera_full, hiera_neck, tap):
    images, points, labels, d = hiera_input
    with torch.no_grad():
        feats = hiera_neck if tap == "neck" else hiera.features_at(images, tap)
        stored = {k: v.clone() for k, v in feats.items()}
        low, iou = hiera.decode(hiera.features_from(feats, tap), points, labels)
    assert all(torch.equal(feats[k], stored[k]) for k in stored)
    torch.testing.assert_close(low, hiera_full[0], **EXACT)
    torch.testing.assert_close(iou, hiera_full[1], **EXACT)
    if tap == "block2":  # a stage end: the stage output is the tap's own "tokens"
        assert set(feats) == {"tokens", "stage0"}
    if tap in ("block5", "block9"):
        assert set(feats) == {"tokens", "stage0", "stage1"}
    if tap == "block5":
        assert feats["tokens"].shape == (1, 64, 64, 384)
        assert feats["stage0"].shape == (1, 256, 256, 96) and feats["stage1"].shape == (1, 128, 128, 192)
        if d is not None:  # the selector's tap in the SAMCL reference
            torch.testing.assert_close(feats["tokens"].mean((1, 2))[0], torch.from_numpy(d["pooled_block5"]),
                                       **EXACT)
    if tap == "block11":
        assert set(feats) == {"tokens", "stage0", "stage1", "stage2"}
    if tap == "neck":
        assert {k: tuple(v.shape) for k, v in feats.items()} == {
            "image_embed": (1, 256, 64, 64), "high_res_0": (1, 32, 256, 256), "high_res_1": (1, 64, 128, 128)}


def test_hiera_matches_official_predictor(hiera, hiera_input, hiera_full):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    images, points, labels, _ = hiera_input
    predictor = SAM2ImagePredictor(hiera.sam)
    image = images[0].permute(1, 2, 0).numpy()
    predictor.set_image(image)
    _, iou_ref, low_ref = predictor.predict(point_coords=points[0].numpy(), point_labels=labels[0].numpy(),
                                            multimask_output=False, return_logits=True)
    torch.testing.assert_close(hiera_full[0][0], torch.from_numpy(low_ref), **EXACT)
    torch.testing.assert_close(hiera_full[1][0], torch.from_numpy(iou_ref), **EXACT)
    # preprocess == SAM2Transforms (ToTensor, Resize at S = identity, Normalize)
    torch.testing.assert_close(hiera.preprocess(images)[0], predictor._transforms(image), atol=1e-6, rtol=0)
    assert (hiera.image_size, hiera.embed_size, hiera.low_res_size) == (1024, 64, 256)
    assert len(hiera.encoder_blocks) == 12 and not any(p.requires_grad for p in hiera.parameters())


def test_hiera_batched_decode_equals_per_image(hiera, hiera_input, hiera_neck):
    """SAM2's decoder batches images (repeat_image=False); check against one image at a time."""
    images, points, labels, _ = hiera_input
    with torch.no_grad():
        g = torch.Generator().manual_seed(3)
        enc = {k: torch.cat([v, v + 0.1 * torch.randn(v.shape, generator=g)]) for k, v in hiera_neck.items()}
        pts = torch.cat([points, torch.rand(1, 3, 2, generator=g) * 1024])
        lab = torch.cat([labels, torch.tensor([[1.0, 0.0, 1.0]])])
        for multimask in (False, True):
            low, iou = hiera.decode(enc, pts, lab, multimask=multimask)
            assert low.shape == (2, 3 if multimask else 1, 256, 256)
            assert low.abs().max() <= 32
            for i in range(2):
                low_i, iou_i = hiera.decode({k: v[i:i + 1] for k, v in enc.items()}, pts[i:i + 1], lab[i:i + 1],
                                            multimask=multimask)
                torch.testing.assert_close(low[i:i + 1], low_i, **EXACT)
                torch.testing.assert_close(iou[i:i + 1], iou_i, **EXACT)


def test_hiera_checkpoint_round_trip(hiera, tmp_path):
    path = save_official_checkpoint(hiera, tmp_path / "sam2.1_hiera_tiny.pt")
    # the official format, as sam2.build_sam._load_checkpoint reads it
    sd = torch.load(path, map_location="cpu", weights_only=True)
    assert set(sd) == {"model"} and sd["model"].keys() == hiera.sam.state_dict().keys()
    del sd
    loaded = build_backbone("sam2.1_hiera_t", checkpoint=path)
    assert same_state(loaded.sam, hiera.sam)
    # a SAM checkpoint wrapped in SAM2's format is refused with the file and keys named
    torch.save({"model": {"image_encoder.pos_embed": torch.zeros(1)}}, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match=r"wrong.pt: does not match the model: .*missing"):
        build_backbone("sam2.1_hiera_t", checkpoint=tmp_path / "wrong.pt")


# ----------------------------------------------------------------------- full-size SAM ViT-B
@pytest.mark.slow
def test_vit_b_split_equals_full_and_golden(golden_root_or_none):
    torch.manual_seed(0)
    bb = build_backbone("sam_vit_b")
    perturb_positional(bb.sam, SAM_POS)
    assert (bb.embed_size, bb.low_res_size, len(bb.encoder_blocks)) == (64, 256, 12)
    if golden_root_or_none is not None:
        d = np.load(golden_root_or_none / "sam1_kvasir_pospert.npz")
        images = torch.from_numpy(d["image_1024"]).permute(2, 0, 1)[None].contiguous()
        points, labels = torch.from_numpy(d["points"])[None], torch.from_numpy(d["point_labels"]).float()[None]
    else:
        d = None
        images, points, labels = random_batch(1, 1024)
    with torch.no_grad():
        full = bb(images, points, labels)
        feats = bb.features_at(images, "block6")
        split = bb.decode(bb.features_from(feats, "block6"), points, labels)
    torch.testing.assert_close(split[0], full[0], **EXACT)
    if d is not None:
        torch.testing.assert_close(full[0], torch.from_numpy(d["low_res_logits_vanilla"]), **EXACT)
        torch.testing.assert_close(full[1], torch.from_numpy(d["iou_pred_vanilla"]), **EXACT)
        torch.testing.assert_close(feats["tokens"].mean((1, 2))[0], torch.from_numpy(d["pooled_block6"]), **EXACT)


def test_batched_decoder_equals_official_decoder_per_image():
    """decode_all_masks runs B images at once; the official MaskDecoder runs one image at a time."""
    torch.manual_seed(3)
    bb = build_backbone("sam_small")
    for p in bb.sam.image_encoder.parameters():
        p.data.normal_(0, 0.02)
    images = torch.randint(0, 256, (3, 3, 256, 256), dtype=torch.uint8)
    points = torch.rand(3, 3, 2) * 256
    labels = torch.tensor([[1.0, 1, 0], [1, 1, 1], [1, 0, 0]])
    with torch.no_grad():
        enc = bb.features_from(bb.features_at(images, "image"), "image")
        for multimask in (False, True):
            low, iou = bb.decode(enc, points, labels, multimask=multimask)
            pe, md = bb.sam.prompt_encoder, bb.sam.mask_decoder
            for i in range(3):
                sparse, dense = pe(points=(points[i:i + 1], labels[i:i + 1]), boxes=None, masks=None)
                ref_low, ref_iou = md(image_embeddings=enc["image_embed"][i:i + 1],
                                      image_pe=pe.get_dense_pe(), sparse_prompt_embeddings=sparse,
                                      dense_prompt_embeddings=dense, multimask_output=multimask)
                assert torch.allclose(low[i:i + 1], ref_low, atol=1e-5)
                assert torch.allclose(iou[i:i + 1], ref_iou, atol=1e-6)
