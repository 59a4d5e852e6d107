"""The items of the ``samcl_reference`` protocol, each against hand-computed values: the per-iteration
cosine schedule, nearest upsampling (loss and scores), the reference's IoU loss, the shuffled
selector buffer, the general domain joining after the last domain; and a tiny end-to-end run."""
from __future__ import annotations

import json
import math
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.core.losses import reference_iou, sam_loss
from benchmark.backbones.base import SAMBackbone
from methods.template import SAMStrategy


def _bilinear(size):
    return lambda x: F.interpolate(x, (size, size), mode="bilinear", align_corners=False)


def _fake_strategy(mode: str, size: int = 4, iou_loss: str = "project"):
    """What ``SAMStrategy.upscale`` / ``criterion`` / ``sam_loss_of`` read, without a model (the
    backbone's upscale is the real ``SAMBackbone.upscale`` on an object of that image size)."""
    sized = types.SimpleNamespace(image_size=size)
    backbone = types.SimpleNamespace(image_size=size,
                                     upscale=lambda x, m="bilinear": SAMBackbone.upscale(sized, x, m))
    ns = types.SimpleNamespace(upscale_mode=mode, iou_loss=iou_loss, hp={"dice_weight": 10.0},
                               _ddp=None, world_size=1, backbone=backbone)
    ns.upscale = lambda low: SAMStrategy.upscale(ns, low)
    ns.sam_loss_of = lambda *outputs: SAMStrategy.sam_loss_of(ns, *outputs)
    return ns


# ---------------------------------------------------------------------------- upsampling
LOW = torch.tensor([[[[1.0, -3.0], [-3.0, -3.0]]]])  # (1,1,2,2): only the top-left cell positive


def test_nearest_upsampling_is_a_block_repeat():
    up = SAMStrategy.upscale(_fake_strategy("nearest"), LOW)
    by_hand = np.repeat(np.repeat(LOW[0, 0].numpy(), 2, axis=0), 2, axis=1)
    np.testing.assert_array_equal(up[0, 0].numpy(), by_hand)
    bilinear = SAMStrategy.upscale(_fake_strategy("bilinear"), LOW)
    torch.testing.assert_close(bilinear, _bilinear(4)(LOW), rtol=0, atol=0)
    assert not torch.equal(bilinear, up)
    with pytest.raises(ValueError, match="upscale mode must be one of bilinear, nearest"):
        SAMBackbone.upscale(types.SimpleNamespace(image_size=4), LOW, "bicubic")


def test_the_evaluator_scores_through_the_strategys_upscale():
    from benchmark.engine.evaluator import evaluate_domains

    mask = torch.zeros(4, 4)
    mask[:2, :2] = 1  # the top-left block: nearest gets it exactly, bilinear only its corner pixel
    data = [{"mask": mask, "domain": 0, "index": 0}]

    def scores(mode):
        s = _fake_strategy(mode)
        s.model, s.device = torch.nn.Identity(), torch.device("cpu")
        s.predict = lambda batch: LOW.expand(len(batch["mask"]), -1, -1, -1)
        return evaluate_domains(s, [data], batch_size=1)["iou"][0]

    assert scores("nearest") == 1.0
    assert scores("bilinear") == pytest.approx(1 / 4)  # bilinear: logit > 0 at (0, 0) only


def test_the_loss_upsamples_through_the_strategys_upscale():
    mask = torch.zeros(1, 4, 4)
    mask[0, :2, :2] = 1
    iou_pred = torch.tensor([[0.3]])
    for mode in ("nearest", "bilinear"):
        s = _fake_strategy(mode)
        s.mb_output, s.mb_y = (LOW, iou_pred), mask
        up = torch.from_numpy(np.repeat(np.repeat(LOW.numpy(), 2, 2), 2, 3)) if mode == "nearest" \
            else _bilinear(4)(LOW)
        assert SAMStrategy.criterion(s) == sam_loss(up, iou_pred, mask)


# ---------------------------------------------------------------------------- IoU loss
def test_reference_iou_loss_by_hand():
    logits = torch.tensor([[[[0.5, 0.4], [-1.0, 2.0]]],     # >= 0.5: (0,0), (1,1); 0.4 is not
                           [[[-1.0, -1.0], [-1.0, -1.0]]]])  # empty prediction
    masks = torch.tensor([[[1.0, 1.0], [0.0, 0.0]],
                          [[0.0, 0.0], [0.0, 0.0]]])         # the second mask is empty too
    iou_pred = torch.tensor([[0.5], [0.2]])
    ref = reference_iou(logits, masks.unsqueeze(1))
    torch.testing.assert_close(ref, torch.tensor([1 / (3 + 1e-7), 0.0]))  # empty/empty: 0
    ref_term = ((0.5 - 1 / 3) ** 2 + (0.2 - 0.0) ** 2) / 2               # MSE sum / batch size
    project_term = (0.5 - 2 / 3) ** 2 + (0.2 - 1.0) ** 2                 # logit > 0; empty/empty = 1
    diff = sam_loss(logits, iou_pred, masks, iou_loss="reference") - sam_loss(logits, iou_pred, masks)
    assert float(diff) == pytest.approx(ref_term - project_term, abs=1e-6)
    with pytest.raises(ValueError, match="iou_loss"):
        sam_loss(logits, iou_pred, masks, iou_loss="other")


# ---------------------------------------------------------------------------- strategies
@pytest.fixture(scope="module")
def domains(tmp_path_factory, tiny_domain):
    from benchmark.backbones import build_backbone
    from scenarios.folder import FolderSegmentationDataset

    root = tmp_path_factory.mktemp("samcl_reference")
    torch.manual_seed(0)
    bb = build_backbone("sam_small", None)
    out = {}
    for i, (name, n) in enumerate((("a", 8), ("b", 6), ("gen", 4))):
        tiny_domain(root / name, split="train", n=n, size=64, seed=i)
        out[name] = FolderSegmentationDataset(root / name, "train", image_size=256, domain_index=i,
                                              domain_name=name)
    return bb, out


def _strategy(method, bb, seed=0, **hparams):
    import copy

    from benchmark.core.registry import get_method

    return get_method(method)(backbone=copy.deepcopy(bb), domain_names=["a", "b", "gen"], n_trained=2,
                              hparams={"eval_batch_size": 4, **hparams}, seed=seed)


def test_cosine_iteration_lr_follows_the_closed_form_per_iteration(domains):
    from scenarios.stream import to_avalanche

    bb, ds = domains
    lr, eta_min, epochs = 0.01, 1e-4, 2
    s = _strategy("finetune_decoder", bb, lr=lr, eta_min=eta_min, epochs=epochs, batch_size=2,
                  lr_schedule="cosine_iteration")  # 6 images, batch 2: 3 iterations per epoch
    seen, original = [], s._after_training_iteration

    def after_iteration(**kwargs):
        original(**kwargs)
        seen.append(s.optimizer.param_groups[0]["lr"])  # the lr of the next iteration

    s._after_training_iteration = after_iteration
    s.learn_domain(next(iter(to_avalanche([ds["b"]], [ds["b"]]).train_stream)), 0)
    assert s.scheduler.T_max == epochs  # T_max counts iterations here, as the reference steps it
    closed = [eta_min + (lr - eta_min) * (1 + math.cos(math.pi * k / epochs)) / 2 for k in range(1, 7)]
    assert seen == pytest.approx(closed, rel=1e-9, abs=1e-12)
    assert seen[1] == pytest.approx(eta_min) and seen[3] == pytest.approx(lr)  # a cycle per 4 steps


def _per_item_vectors(s, dataset):
    from methods.samcl.selector import pooled_tap
    from scenarios.stream import collate_samples

    with torch.no_grad():
        batch = collate_samples([dataset[i] for i in range(len(dataset))])
        return pooled_tap(s.backbone_features(batch)["tokens"].float())


def test_shuffled_buffer_is_a_seeded_subset(domains):
    bb, ds = domains
    s = _strategy("samcl", bb, seed=7, buffer_size=3, buffer_order="shuffled")
    assert s.add_domain_vectors("a", ds["a"]) == 3
    kept = s.buffer.vectors["a"]
    assert kept.shape == (3, 192)
    every = _per_item_vectors(s, ds["a"])
    # the first 3 indices of a loader shuffled with a generator seeded seed * 1000 + domain index
    # (the loader draws its workers' base seed from the generator before the permutation)
    loader = torch.utils.data.DataLoader(range(8), batch_size=4, shuffle=True,
                                         generator=torch.Generator().manual_seed(7 * 1000 + 0))
    order = torch.cat(list(loader))[:3]
    assert order.tolist() != [0, 1, 2]
    torch.testing.assert_close(kept, every[order])  # the first 3 of the seeded shuffle
    again = _strategy("samcl", bb, seed=7, buffer_size=3, buffer_order="shuffled")
    again.add_domain_vectors("a", ds["a"])
    assert torch.equal(again.buffer.vectors["a"], kept)  # same seed, same subset
    first = _strategy("samcl", bb, seed=7, buffer_size=3)
    first.add_domain_vectors("a", ds["a"])
    torch.testing.assert_close(first.buffer.vectors["a"], every[:3])  # the default: dataset order
    with pytest.raises(ValueError, match="buffer_order"):
        _strategy("samcl", bb, buffer_order="random")


@pytest.mark.parametrize("join", ["first", "after_last"])
def test_general_domain_joins_after_the_last_domain(domains, join):
    bb, ds = domains
    s = _strategy("samcl", bb, epochs=0, buffer_size=4, selector_epochs=2, general_join=join)
    s.general_datasets = [ds["gen"]]
    s.learn_domain(types.SimpleNamespace(dataset=ds["a"]), 0)
    assert ("gen" in s.buffer.vectors) == (join == "first")
    assert list(s.selector_losses) == ["a"]
    s.learn_domain(types.SimpleNamespace(dataset=ds["b"]), 1)
    assert sorted(s.buffer.vectors) == ["a", "b", "gen"]
    rounds = ["a", "b", "gen"] if join == "after_last" else ["a", "b"]  # one more selector round
    assert list(s.selector_losses) == rounds
    assert s.extra_record()["buffer_sizes"] == {"a": 4, "b": 4, "gen": 4}


# ---------------------------------------------------------------------------- end to end
def test_tiny_run_under_samcl_reference(tmp_path, tiny_run, monkeypatch):
    from benchmark.cli import main
    import methods.template as template

    seen = set()
    original_upscale, original_loss = SAMStrategy.upscale, template.sam_loss

    def upscale(self, low):
        seen.add(("upscale", self.upscale_mode))
        return original_upscale(self, low)

    def loss(*args, **kwargs):
        seen.add(("iou_loss", kwargs.get("iou_loss")))
        return original_loss(*args, **kwargs)

    monkeypatch.setattr(SAMStrategy, "upscale", upscale)
    monkeypatch.setattr(template, "sam_loss", loss)
    assert main(tiny_run("samcl", tmp_path / "ref", epochs=1) + ["--protocol", "samcl_reference"]) == 0
    assert seen == {("upscale", "nearest"), ("iou_loss", "reference")}  # sam_small: a SAM ViT
    (path,) = (tmp_path / "ref").glob("*.json")
    rec = json.loads(path.read_text())
    assert rec["config"]["protocol"] == "samcl_reference"
    assert rec["hparams"]["general_join"] == "after_last" and rec["hparams"]["lr_schedule"] == "cosine_iteration"
    extra = rec["extra"]
    # T = 3 trained domains, then one more round after the general domain joined: T + 1 rounds
    assert list(extra["selector_losses"]) == ["polyp", "shadow", "lesion", "natural"]
    assert extra["buffer_sizes"]["natural"] == 4
    assert len(extra["selector_confusion_per_row"]) == 4 and len(rec["matrices"]["iou"]) == 4
    seen.clear()
    assert main(tiny_run("samcl", tmp_path / "proj", epochs=1)) == 0
    assert seen == {("upscale", "bilinear"), ("iou_loss", "project")}
    (proj,) = (tmp_path / "proj").glob("*.json")
    proj = json.loads(proj.read_text())
    assert list(proj["extra"]["selector_losses"]) == ["polyp", "shadow", "lesion"]
    assert proj["config"]["protocol"] == "project" and proj["extra"]["run_id"] != extra["run_id"]
