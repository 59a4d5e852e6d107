"""RegCL's merging family as strategies (merge_mean, regcl, magmax, dop, replay_merge): what each
merged adapter is after two domains, on both adapters. The rules themselves:
test_merging_rules.py; their records through the CLI: e2e/test_merging_runs.py."""
import copy

import pytest
import torch

from benchmark.core.registry import get_method
from methods.baselines._merging import MAGMAX_SCALE, max_abs, regmean
from methods.samcl.augmodule import AugModule, config_for_backbone
from scenarios.stream import to_avalanche


@pytest.fixture(scope="module")
def small_sam(block6_domains):
    return block6_domains[0]


@pytest.fixture(scope="module")
def two_domains(block6_domains):
    """Two tiny domains (4 training images each) cached at block6."""
    views = block6_domains[1]
    return to_avalanche(views, views).train_stream


def trained(name, small_sam, stream, **hp):
    """The strategy after both domains, with what it saw: starts[t] (the adapter each domain's
    training started from), tuned[t] (after training) and grams[t] (regcl's)."""
    torch.manual_seed(0)
    strategy = get_method(name)(backbone=copy.deepcopy(small_sam), domain_names=["a", "b"], n_trained=2,
                                hparams={"batch_size": 2, "epochs": 1, "rank": 4, **hp}, seed=0)
    seen = {"starts": [], "tuned": [], "grams": []}
    before, fold = strategy.before_domain, strategy.fold
    strategy.before_domain = lambda exp: (before(exp), seen["starts"].append(strategy.snapshot()))
    strategy.fold = lambda tuned, exp: (seen["tuned"].append(dict(tuned)), fold(tuned, exp))
    if hasattr(strategy, "domain_grams"):
        grams = strategy.domain_grams
        strategy.domain_grams = lambda data: seen["grams"].append(grams(data)) or seen["grams"][-1]
    for t in range(2):
        strategy.learn_domain(stream[t], t)
    return strategy, seen


def close(a, b):
    return all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


@pytest.mark.parametrize("adapter", ["lora", "augmodule"])
def test_merge_mean_averages_sequentially_tuned_adapters(small_sam, two_domains, adapter):
    s, seen = trained("merge_mean", small_sam, two_domains, adapter=adapter)
    assert close(seen["starts"][1], seen["tuned"][0])  # sequ: domain 2 starts from domain 1's tuned
    assert not close(seen["tuned"][1], seen["tuned"][0])
    mean = {k: (seen["tuned"][0][k] + seen["tuned"][1][k]) / 2 for k in seen["tuned"][0]}
    assert close(s.snapshot(), mean)
    assert set(s.kept) == {"sum", "last"}


@pytest.mark.parametrize("adapter", ["lora", "augmodule"])
def test_regcl_is_regmean_of_the_tuned_adapters(small_sam, two_domains, adapter):
    s, seen = trained("regcl", small_sam, two_domains, adapter=adapter)
    merged, (t0, t1), (g0, g1) = s.snapshot(), seen["tuned"], seen["grams"]
    assert set(g0) == set(s.gram_layers()) and len(g0) >= 6
    for name in merged:
        expected = regmean([g0[name], g1[name]], [t0[name], t1[name]]) if name in g0 else (t0[name] + t1[name]) / 2
        assert torch.allclose(merged[name], expected, atol=1e-4), name
    storage = s.storage()
    assert storage["kept_gram_sum"] > 0 and storage["kept_gram_w_sum"] > 0


def test_magmax_is_init_plus_half_the_max_magnitude_task_vector(small_sam, two_domains):
    s, seen = trained("magmax", small_sam, two_domains)
    init = seen["starts"][0]
    for name, value in s.snapshot().items():
        taus = [t[name] - init[name] for t in seen["tuned"]]
        assert torch.allclose(value, init[name] + MAGMAX_SCALE["max_abs"] * max_abs(taus), atol=1e-6)


def test_dop_without_steps_is_the_pairwise_mean_and_with_steps_moves(small_sam, two_domains):
    s, seen = trained("dop", small_sam, two_domains, dop_num_steps=0)
    t0, t1 = seen["tuned"]
    assert close(s.snapshot(), {k: (t0[k] + t1[k]) / 2 for k in t0})
    moved, _ = trained("dop", small_sam, two_domains, dop_num_steps=5, dop_lr=1e-2)
    assert not close(moved.snapshot(), s.snapshot())


def test_replay_merge_refines_on_current_data_and_buffer(small_sam, two_domains):
    s, seen = trained("replay_merge", small_sam, two_domains, buffer_per_domain=2)
    assert close(seen["starts"][1], seen["starts"][0])  # indi: every domain from the initial adapter
    assert len(s.loss_history) == 3  # one epoch per domain + one refining epoch on domain 2
    assert [len(i) for i in s.buffer.indices] == [2, 2]
    assert set(s.kept["merged_gram"]) == set(s.gram_layers())


def check_merges_augmodule(s, *extra_components, refined=False):
    """The merged adapter is an AugModule's own parameters (A, B, norms, prompt; no LoRA in the
    encoder), the live one the blocks run (``refined``: trained further after the merge), and
    storage counts it (and ``extra_components``)."""
    fresh = dict(AugModule(config_for_backbone(s.backbone, rank=4)).named_parameters())
    live = s.snapshot()
    assert {k: v.shape for k, v in live.items()} == {k: v.shape for k, v in fresh.items()}
    assert not any("lora_" in n for n, _ in s.model.named_modules())
    assert close(live, s.merged()) != refined
    storage = s.storage()
    assert storage["merged_adapter"] == 4 * sum(v.numel() for v in fresh.values())
    assert all(storage[c] > 0 for c in extra_components), storage


@pytest.mark.parametrize("variant", ["max_abs", "rnd_mix"])
def test_magmax_merges_augmodules(small_sam, two_domains, variant):
    s, seen = trained("magmax", small_sam, two_domains, adapter="augmodule", variant=variant)
    check_merges_augmodule(s, "kept_init", "kept_last", "kept_merged_tv")
    init, scale = seen["starts"][0], MAGMAX_SCALE[variant]
    picked_second = 0
    for name, value in s.snapshot().items():
        taus = [t[name] - init[name] for t in seen["tuned"]]
        if variant == "max_abs":
            assert torch.allclose(value, init[name] + scale * max_abs(taus), atol=1e-6), name
        else:  # each entry is one domain's task-vector entry (scale 1)
            tau = value - init[name]
            first, second = (torch.isclose(tau, t, atol=1e-6) for t in taus)
            assert bool((first | second).all()), name
            picked_second += int((second & ~first).sum())
    assert variant == "max_abs" or picked_second > 0


def test_dop_merges_augmodules(small_sam, two_domains):
    s, seen = trained("dop", small_sam, two_domains, adapter="augmodule", dop_num_steps=0)
    check_merges_augmodule(s, "kept_init", "kept_last")
    t0, t1 = seen["tuned"]
    assert close(s.snapshot(), {k: (t0[k] + t1[k]) / 2 for k in t0})
    moved, _ = trained("dop", small_sam, two_domains, adapter="augmodule", dop_num_steps=5, dop_lr=1e-2)
    assert not close(moved.snapshot(), s.snapshot())


def test_replay_merge_merges_augmodules(small_sam, two_domains):
    s, seen = trained("replay_merge", small_sam, two_domains, adapter="augmodule", buffer_per_domain=2)
    check_merges_augmodule(s, "kept_init", "kept_merged_gram", "buffer_images", refined=True)
    assert set(s.kept["merged_gram"]) == {"A.weight", *(f"B.{i}.weight" for i in range(5))}
    assert close(seen["starts"][1], seen["starts"][0]) and len(s.loss_history) == 3
    assert [len(i) for i in s.buffer.indices] == [2, 2]


@pytest.mark.parametrize("name", ["merge_mean", "regcl", "magmax", "dop"])
def test_storage_is_constant_in_the_number_of_domains(small_sam, two_domains, name):
    torch.manual_seed(0)
    s = get_method(name)(backbone=copy.deepcopy(small_sam), domain_names=["a", "b"], n_trained=2,
                         hparams={"batch_size": 2, "epochs": 1, "rank": 4, "dop_num_steps": 1}
                         if name == "dop" else {"batch_size": 2, "epochs": 1, "rank": 4}, seed=0)
    totals = []
    for t in range(2):
        s.learn_domain(two_domains[t], t)
        totals.append(sum(s.storage().values()))
    assert totals[0] == totals[1] > 0


def test_bad_settings_are_one_line_errors(small_sam):
    with pytest.raises(ValueError, match="'adapter' must be lora or augmodule"):
        get_method("regcl").resolve_hparams({"adapter": "prompt"})
    with pytest.raises(ValueError, match="'variant' must be max_abs or rnd_mix"):
        get_method("magmax").resolve_hparams({"variant": "sum"})
    with pytest.raises(ValueError, match="applies to adapter 'lora' only"):
        get_method("merge_mean")(backbone=copy.deepcopy(small_sam), domain_names=["a"], n_trained=1,
                                 hparams={"adapter": "augmodule", "targets": ["proj"]})


def test_merge_ties_takes_regcls_settings_on_the_paper_stream_only():
    presets = get_method("merge_ties").presets("paper", "sam_vit_b")
    assert [values for _, values in presets] == [{"density": 0.2, "lam": 0.55}]
    # on the built-in stream only the batch every method shares (methods/configs/base.yaml)
    assert get_method("merge_ties").presets("synthetic", "sam_small") == [
        ("preset base.yaml [stream:synthetic]", {"batch_size": 4})]
    assert get_method("merge_ties").declared_defaults()["lam"] == 1.0
