"""ewc, replay, lwf and l2p at strategy level: they train, and their method-specific machinery does
what it says. sam_small with random weights, tiny data. Their records through the CLI:
e2e/test_baseline_runs.py."""
import copy

import pytest
import torch

from benchmark.backbones import build_backbone
from benchmark.engine.feature_cache import FeatureCache
from scenarios.folder import FolderSegmentationDataset


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_domain):
    """A random-weight sam_small, two tiny domains and their feature cache."""
    tmp = tmp_path_factory.mktemp("baselines")
    torch.manual_seed(0)
    backbone = build_backbone("sam_small", checkpoint=None)
    datasets = [FolderSegmentationDataset(tiny_domain(tmp / f"d{i}", split="train", n=4, size=48,
                                                      seed=i), "train", image_size=256, domain_index=i)
                for i in range(2)]
    return backbone, datasets, FeatureCache(tmp / "cache", progress=False)


def make(env, name, plugins=None, **hparams):
    from benchmark.core.registry import get_method
    from scenarios.stream import to_avalanche

    backbone, datasets, cache = env
    cls = get_method(name)
    views = [cache.view(backbone, d, cls.tap) for d in datasets]
    torch.manual_seed(0)
    hp = {"epochs": 2, "batch_size": 2, **hparams}
    strategy = cls(backbone=copy.deepcopy(backbone), domain_names=["a", "b"], n_trained=2, hparams=hp,
                   seed=0, plugins=plugins)
    return strategy, to_avalanche(views, views).train_stream


def snapshot(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def changed(before, module):
    now = dict(module.named_parameters())
    return {n for n, v in before.items() if not torch.equal(v, now[n].detach())}


def test_ewc_importances_and_penalty(env):
    s, stream = make(env, "ewc", lr=5e-3)
    frozen = snapshot(s.backbone.sam.mask_decoder)
    s.learn_domain(stream[0], 0)
    assert s.loss_history[-1] < s.loss_history[0]
    imp = s.ewc.importances[0]
    trainable = {n for n, p in s.model.named_parameters() if p.requires_grad}
    assert set(imp) == trainable and all("lora_" in n for n in imp)  # LoRA only, not the backbone
    assert sum(float(v.data.sum()) for v in imp.values()) > 0
    assert s.penalty() == 0.0
    s.learn_domain(stream[1], 1)
    assert s.penalty() > 0 and s.extra_record()["ewc_weighted_penalty_mean"][1] > 0
    assert not changed(frozen, s.backbone.sam.mask_decoder)
    assert set(s.ewc.importances) == {0, 1}
    st = s.storage()
    assert st["ewc_importances"] == st["ewc_old_parameters"] == 2 * st["lora"]


def test_ewc_online_mode_keeps_one_set(env):
    s, stream = make(env, "ewc", epochs=1, ewc_mode="online", ewc_decay=0.5)
    s.learn_domain(stream[0], 0)
    s.learn_domain(stream[1], 1)
    st = s.storage()
    assert st["ewc_importances"] == st["ewc_old_parameters"] == st["lora"]
    with pytest.raises(ValueError, match="ewc_mode"):
        make(env, "ewc", ewc_mode="both")


def test_replay_mixes_old_domain_items(env):
    from avalanche.training.plugins import SupervisedPlugin

    class Spy(SupervisedPlugin):
        def __init__(self):
            super().__init__()
            self.domains = []

        def before_forward(self, strategy, **kwargs):
            self.domains.append(strategy.mbatch["domain"].tolist())

    spy = Spy()
    s, stream = make(env, "replay", plugins=[spy], buffer_per_domain=2, replay_batch_size=2)
    s.learn_domain(stream[0], 0)
    assert all(set(d) == {0} for d in spy.domains)
    first = s.buffer.indices[0]
    assert len(first) == 2 and s.storage()["buffer_images"] == 2 * 3 * 256 * 256
    spy.domains.clear()
    lora = snapshot(s.parts)
    s.learn_domain(stream[1], 1)
    assert spy.domains and all(set(d) == {0, 1} for d in spy.domains)  # every batch mixes both
    assert changed(lora, s.parts)
    assert s.buffer_items() == 4
    again, _ = make(env, "replay", buffer_per_domain=2)  # seeded: the same choice
    again.learn_domain(stream[0], 0)
    assert again.buffer.indices[0] == first


def test_lwf_distils_and_keeps_its_teacher_frozen(env):
    from methods.baselines.lwf import bernoulli_kd

    x = torch.randn(2, 1, 8, 8)
    assert float(bernoulli_kd(x, x, 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(bernoulli_kd(x, -x, 2.0)) > 0

    s, stream = make(env, "lwf", lr=5e-3)
    s.learn_domain(stream[0], 0)
    assert s.loss_history[-1] < s.loss_history[0]
    teacher = s.lwf.lwf.prev_model
    kept = {n: t.clone() for n, t in teacher.items()}
    live = dict(s.model.named_parameters())
    assert kept and all("lora_" in n and torch.equal(t, live[n]) for n, t in kept.items())
    seen = []
    original = s.lwf.lwf.teacher_logits

    def spy(strategy, batch):  # the teacher is the same, untouched, at every training step
        seen.append(all(torch.equal(kept[n], teacher[n]) for n in kept))
        return original(strategy, batch)

    s.lwf.lwf.teacher_logits = spy
    student = snapshot(s.parts)
    s.learn_domain(stream[1], 1)
    assert seen and all(seen) and all(torch.equal(kept[n], teacher[n]) for n in kept)
    assert changed(student, s.parts)
    assert s.extra_record()["lwf_weighted_distillation_mean"][1] > 0
    assert any(not torch.equal(kept[n], s.lwf.lwf.prev_model[n]) for n in kept)  # next teacher
    assert s.storage()["teacher_copy"] == s.storage()["lora"]


def test_l2p_keys_move_towards_queries(env):
    from torch.utils.data import DataLoader

    s, stream = make(env, "l2p", lr=5e-2, epochs=3)
    frozen = snapshot(s.backbone.sam)
    pool = s.parts["pool"]
    data = stream[0].dataset
    batch = next(iter(DataLoader(data, batch_size=len(data), collate_fn=data.collate_fn)))
    query = s.query_of(s.encode(batch["features"], batch))

    def closeness():
        sim = torch.nn.functional.cosine_similarity(query[:, None], pool.keys.detach()[None], dim=-1)
        return float(sim.topk(s.hp["top_k"], dim=1).values.mean())

    before, prompts = closeness(), pool.prompts.detach().clone()
    with torch.no_grad():
        with_prompts = s.predict(batch)
        saved = pool.prompts.data.clone()
        pool.prompts.data.zero_()
        zeroed = s.predict(batch)
        pool.prompts.data.copy_(saved)
    assert not torch.allclose(with_prompts, zeroed)  # the prompt tokens reach the decoder
    s.learn_domain(stream[0], 0)
    assert closeness() > before
    assert not torch.equal(prompts, pool.prompts.detach())
    assert not changed(frozen, s.backbone.sam)  # all of SAM stays frozen
    s.predict(batch)
    assert s.last_chosen.shape == (len(data), s.hp["top_k"])
    assert s.storage()["trained_parameters"] == (10 * 5 * 128 + 10 * 128) * 4
    with pytest.raises(ValueError, match="top_k"):
        make(env, "l2p", top_k=11)
