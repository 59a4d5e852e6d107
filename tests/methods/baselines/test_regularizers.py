"""si, mas, gem, agem and der at strategy level (sam_small with random weights, two tiny domains):
their importances / reference gradients come from the SAM forward on the harness's batches, over
the LoRA factors only; GEM's and A-GEM's projections remove a conflict; DER++'s reservoir keeps
the step's logits; and each resumes from its saved state to the same parameters. Their records
through the CLI and the forgetting sanity check: e2e/test_regularizer_runs.py."""
import copy
import io
import math

import pytest
import torch

from benchmark.backbones import build_backbone
from benchmark.engine.feature_cache import FeatureCache
from methods.baselines import _regularizers as reg
from scenarios.folder import FolderSegmentationDataset


@pytest.fixture(scope="module")
def domains(tmp_path_factory, tiny_domain):
    """A random-weight sam_small, two tiny domains (6 training images each) and their cache."""
    tmp = tmp_path_factory.mktemp("regularizers")
    torch.manual_seed(0)
    backbone = build_backbone("sam_small", checkpoint=None)
    data = [FolderSegmentationDataset(tiny_domain(tmp / f"d{i}", split="train", n=6, size=48, seed=10 + i),
                                      "train", image_size=256, domain_index=i) for i in range(2)]
    return backbone, data, FeatureCache(tmp / "cache", progress=False)


def build(domains, name, **hparams):
    """(strategy, train stream) of method ``name`` on the two domains, 2 epochs of batches of 2."""
    from benchmark.core.registry import get_method
    from scenarios.stream import to_avalanche

    backbone, data, cache = domains
    cls = get_method(name)
    views = [cache.view(backbone, d, cls.tap) for d in data]
    torch.manual_seed(0)
    strategy = cls(backbone=copy.deepcopy(backbone), domain_names=["a", "b"], n_trained=2,
                   hparams={"epochs": 2, "batch_size": 2, **hparams}, seed=0)
    return strategy, to_avalanche(views, views).train_stream


def lora_names(strategy):
    names = set(strategy.named_trainable())
    assert names and all("lora_" in n for n in names)
    return names


def finite_and_nonzero(tensors):
    values = [t.data if hasattr(t, "data") else t for t in tensors]
    return all(bool(torch.isfinite(v).all()) for v in values) and sum(float(v.abs().sum()) for v in values) > 0


def test_si_importances_on_lora_only(domains):
    s, stream = build(domains, "si")
    s.learn_domain(stream[0], 0)
    importances = s.si.ewc_data[1]
    assert set(importances) == lora_names(s)
    assert finite_and_nonzero(importances.values())
    s.learn_domain(stream[1], 1)
    assert s.extra_record()["si_weighted_penalty_mean"][0] == 0.0
    assert s.extra_record()["si_weighted_penalty_mean"][1] > 0
    st = s.storage()
    assert st["si_importances"] == st["si_old_parameters"] == st["si_path_integral"] == st["lora"]


def test_mas_importance_is_the_output_norm_gradient_on_lora_only(domains):
    s, stream = build(domains, "mas", mas_images=4)
    s.learn_domain(stream[0], 0)
    assert set(s.mas.importance) == set(s.mas.params) == lora_names(s)
    assert finite_and_nonzero(s.mas.importance.values())
    # the pass itself: mean |d mean(logits^2) / d theta| over the seeded 4-image subset
    again = reg.mean_grad_stat(s, stream[0].dataset, reg.output_sq_norm, torch.abs, max_items=4)
    for n, imp in s.mas.importance.items():
        assert torch.allclose(imp.data, again[n])
    s.learn_domain(stream[1], 1)
    assert s.extra_record()["mas_weighted_penalty_mean"][1] > 0
    st = s.storage()
    assert st["mas_importances"] == st["mas_old_parameters"] == st["lora"]


def test_seg_loss_gradient_is_the_training_loss_gradient(domains):
    s, stream = build(domains, "gem")
    [batch] = list(reg.domain_batches(s, stream[0].dataset, max_items=2))
    g = reg.batch_gradient(s, batch)
    s.model.zero_grad(set_to_none=True)
    s.mbatch = batch
    s.mb_output = s.run_model(batch)
    (s.criterion() / 2).backward()
    assert torch.allclose(g, reg.flat_grad(list(s.named_trainable().values())), atol=1e-6)
    assert float(g.abs().sum()) > 0


def test_gem_quadratic_program_removes_conflicts():
    from methods.baselines.gem import SAMGEMPlugin

    plugin = SAMGEMPlugin(reg.FeatureMemory(1, 1, 0), memory_strength=0.0)
    plugin.G = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert plugin.project(torch.tensor([1.0, 2.0, 3.0])) is None
    v = plugin.project(torch.tensor([-1.0, 2.0, 3.0]))
    assert torch.allclose(v, torch.tensor([0.0, 2.0, 3.0]), atol=1e-3)  # closest g with G g >= 0
    plugin.memory_strength = 0.5  # the margin bounds the dual: every memory gradient is added >= 0.5 times
    v = plugin.project(torch.tensor([-1.0, 2.0, 3.0]))
    assert torch.allclose(v, torch.tensor([0.0, 2.5, 3.0]), atol=1e-3)


def test_agem_projection_removes_the_conflict():
    from methods.baselines.agem import agem_project

    ref = torch.tensor([1.0, 1.0])
    assert agem_project(torch.tensor([1.0, 0.0]), ref) is None
    v = agem_project(torch.tensor([-3.0, 1.0]), ref)
    assert torch.allclose(v, torch.tensor([-2.0, 2.0])) and float(v @ ref) == pytest.approx(0.0)


@pytest.mark.parametrize("name", ["gem", "agem"])
def test_memory_methods_project_the_real_gradient(domains, name):
    s, stream = build(domains, name, **{f"{name}_patterns": 3})
    s.learn_domain(stream[0], 0)
    memory = s.projector.memory
    assert memory.indices and len(memory.indices[0]) == 3 and "features" in memory.batches[0]
    params = list(s.named_trainable().values())
    seen = []
    original = s.projector.after_backward

    def checked(strategy, **kwargs):  # after the plugin, the step's gradient agrees with the memory
        before = reg.flat_grad(params).clone()
        original(strategy, **kwargs)
        after = reg.flat_grad(params)
        refs = s.projector.G if name == "gem" else s.projector.reference_gradients[None]
        # (GEM's quadratic program adds 1e-3 to its diagonal, so agreement is up to a small slack)
        assert bool((refs @ after >= -1e-3 * after.norm() * refs.norm(dim=1)).all())
        seen.append(not torch.equal(before, after))

    s.projector.after_backward = checked
    s.learn_domain(stream[1], 1)
    assert seen and s.extra_record()[f"{name}_projected_fraction"][1] == pytest.approx(sum(seen) / len(seen))
    st = s.storage()
    features = sum(t.numel() * 4 for t in memory.batches[0]["features"].values())
    assert st["memory_inputs"] == 2 * features and st["memory_masks"] == 2 * 3 * (256 * 256 // 8)


def test_der_reservoir_keeps_the_steps_logits(domains):
    s, stream = build(domains, "der", der_buffer_size=5)
    s.learn_domain(stream[0], 0)
    buffer = s.der.buffer
    assert buffer.seen == 12 and buffer.filled == 5  # 6 images x 2 epochs offered, 5 kept
    items = buffer.contents()
    assert items["logits"].shape[0] == 5 and "features" in items and "image" not in items
    with torch.no_grad():  # the logits are those of an earlier model: they differ from today's
        assert not torch.allclose(s.run_model(items)[0], items["logits"])
    st = s.storage()
    assert st["buffer_logits"] == items["logits"].numel() * 4 and st["buffer_inputs"] > st["buffer_logits"]


@pytest.mark.parametrize("name", ["si", "mas", "gem", "agem", "der"])
def test_resume_round_trip(domains, name):
    """Saving after domain 0 and loading into a fresh strategy gives the same training on domain 1."""
    straight, stream = build(domains, name)
    straight.learn_domain(stream[0], 0)
    buffer = io.BytesIO()
    torch.save(straight.state_dict(), buffer)
    buffer.seek(0)
    resumed, _ = build(domains, name)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    resumed.on_resume([stream[0]])
    for s in (straight, resumed):
        torch.manual_seed(1)
        s.learn_domain(stream[1], 1)
    for (n, a), b in zip(straight.named_trainable().items(), resumed.named_trainable().values()):
        assert torch.equal(a, b), n
    assert straight.extra_record() == resumed.extra_record()
    assert straight.storage() == resumed.storage()
    assert all(math.isfinite(v) for v in straight.loss_history)
