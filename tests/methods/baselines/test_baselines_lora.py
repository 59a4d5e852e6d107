"""The LoRA-family baselines: lora, olora, merge_ta, merge_ties (training, merging math). Their
records through the CLI: e2e/test_baseline_runs.py."""
import copy

import pytest
import torch

from methods.baselines._lora_common import task_arithmetic, ties_merge


@pytest.fixture(scope="module")
def backbone(block6_domains):
    return block6_domains[0]


@pytest.fixture(scope="module")
def views(block6_domains):
    """Two tiny domains (4 images each) cached at block6, as the runner feeds these methods."""
    return block6_domains[1]


def make(name, backbone, **hp):
    from benchmark.core.registry import get_method

    torch.manual_seed(0)
    hp = {"batch_size": 2, "epochs": 1, "rank": 4, **hp}
    return get_method(name)(backbone=copy.deepcopy(backbone), domain_names=["a", "b"], n_trained=2,
                            hparams=hp, seed=0)


def learn(strategy, views, domains):
    from scenarios.stream import to_avalanche

    scenario = to_avalanche(list(views), list(views))
    for t in domains:
        strategy.learn_domain(scenario.train_stream[t], t)


def frozen_state(strategy):
    """Every backbone tensor that is not a LoRA factor (the wrapped base weights included)."""
    return {k.replace(".base_layer", ""): v.detach().clone()
            for k, v in strategy.backbone.state_dict().items() if "lora_" not in k}


# ----------------------------------------------------------------------------- merging math
def test_ties_merge_by_hand():
    v1 = torch.tensor([3.0, -1.0, 0.5, 2.0])
    v2 = torch.tensor([-2.0, -1.0, 4.0, 1.0])
    # trim to top 50%: v1 -> [3, 0, 0, 2], v2 -> [-2, 0, 4, 0]; signs of the sum: [+, 0, +, +]
    assert torch.equal(ties_merge([v1, v2], density=0.5), torch.tensor([3.0, 0.0, 4.0, 2.0]))
    # no trim: signs [+, -, +, +]; disjoint means [3, -1, 2.25, 1.5]; then scaled by lam
    assert torch.allclose(ties_merge([v1, v2], density=1.0, lam=2.0),
                          2 * torch.tensor([3.0, -1.0, 2.25, 1.5]))
    with pytest.raises(ValueError, match="density"):
        ties_merge([v1], density=0.0)


def test_task_arithmetic_by_hand():
    a, b = torch.tensor([[1.0, -2.0]]), torch.tensor([[3.0, 4.0]])
    assert torch.equal(task_arithmetic([a, b], 0.5), torch.tensor([[2.0, 1.0]]))


@pytest.mark.parametrize("lam", ["mean", 0.5])
def test_merge_ta_running_sum(backbone, lam):
    s = make("merge_ta", backbone, lam=lam)
    taus = [{"x": torch.full((2, 3), float(v))} for v in (1.0, 2.0, 6.0)]
    for t, tau in enumerate(taus):
        s.domain_index = t
        s.merged = s.merge(tau)
    expected = 3.0 if lam == "mean" else 0.5 * 9.0  # mean of 1, 2, 6 or 0.5 * their sum
    assert torch.allclose(s.merged["x"], torch.full((2, 3), expected))


# ----------------------------------------------------------------------------- configuration
def test_blocks_before_the_tap_are_rejected(backbone):
    with pytest.raises(ValueError, match="block 3 in 'blocks'"):
        make("lora", backbone, blocks=[3, 11])
    with pytest.raises(ValueError, match="targets"):
        make("lora", backbone, targets=["mlp"])


def test_lora_wraps_the_blocks_the_backbone_runs(backbone):
    s = make("lora", backbone, blocks=[9, 11], targets=["qkv", "proj"])
    assert sorted(s.layers) == ["11.attn.proj", "11.attn.qkv", "9.attn.proj", "9.attn.qkv"]
    assert s.backbone.encoder_blocks[9].attn.qkv is s.layers["9.attn.qkv"]
    assert type(s.backbone.encoder_blocks[8].attn.qkv) is torch.nn.Linear
    # fp32 bytes: per layer A (4 x 192) + B (out x 4); qkv out 576, proj out 192
    assert s.storage() == {"lora": 4 * 2 * (4 * 192 + 576 * 4 + 4 * 192 + 192 * 4)}
    trainable = [n for n, p in s.model.named_parameters() if p.requires_grad]
    assert len(trainable) == 8 and all("lora_" in n for n in trainable)
    assert {id(p) for p in s.trainable_parameters()} == {
        id(p) for p in s.model.parameters() if p.requires_grad}  # the template optimises them all


# ----------------------------------------------------------------------------- training
def test_lora_trains_only_its_factors(backbone, views):
    s = make("lora", backbone, epochs=3, lr=3e-3)
    before = frozen_state(s)
    learn(s, views[:1], [0])
    assert len(s.loss_history) == 3 and s.loss_history[-1] < s.loss_history[0]
    assert all(l.lora_B["default"].weight.abs().sum() > 0 for l in s.layers.values())
    after = frozen_state(s)
    assert all(torch.equal(before[k], after[k]) for k in before)  # decoder, blocks, base weights
    assert s.storage()["lora"] == 5 * 4 * (4 * 192 + 576 * 4)


def test_olora_freezes_earlier_adapters(backbone, views):
    s = make("olora", backbone, lr=3e-3)
    before = frozen_state(s)
    learn(s, views, [0])
    d0 = {k: (l.lora_A["d0"].weight.clone(), l.lora_B["d0"].weight.clone()) for k, l in s.layers.items()}
    one = s.storage()["lora_adapters"]
    assert float(s.penalty().detach()) == 0.0  # nothing earlier to be orthogonal to
    learn(s, views, [1])
    assert s.adapters == ["d0", "d1"] and s.storage()["lora_adapters"] == 2 * one
    for k, layer in s.layers.items():
        assert torch.equal(layer.lora_A["d0"].weight, d0[k][0]) and torch.equal(layer.lora_B["d0"].weight, d0[k][1])
        assert layer.lora_B["d1"].weight.abs().sum() > 0
        assert layer.active_adapters == ["d0", "d1"]  # summed at test time
    assert float(s.penalty().detach()) > 0
    after = frozen_state(s)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_olora_penalty_is_sum_abs_AiAt(backbone):
    s = make("olora", backbone, blocks=[11], lambda_orth=2.0)
    for t in range(2):
        s.domain_index = t
        s.before_domain(None)
    layer = s.layers["11.attn.qkv"]
    expected = 2.0 * (layer.lora_A["d0"].weight @ layer.lora_A["d1"].weight.T).abs().sum()
    assert torch.allclose(s.penalty(), expected)


@pytest.mark.parametrize("name", ["merge_ta", "merge_ties"])
def test_merging_writes_the_merged_delta_into_the_model(backbone, views, name):
    s = make(name, backbone, lr=3e-3)
    base = {k: l.get_base_layer().weight.detach().clone() for k, l in s.layers.items()}
    others = {k: v for k, v in frozen_state(s).items() if not k.endswith("attn.qkv.weight")}
    learn(s, views, [0])
    first = s.storage()
    learn(s, views, [1])
    assert s.lams == ([1.0, 0.5] if name == "merge_ta" else [1.0, 1.0])
    for k, layer in s.layers.items():
        assert torch.allclose(layer.get_base_layer().weight, base[k] + s.merged[k], atol=1e-6)
        assert s.merged[k].abs().sum() > 0
        assert layer.lora_B["task"].weight.abs().sum() == 0  # reset for the next domain
    after = frozen_state(s)
    assert all(torch.equal(others[k], after[k]) for k in others)  # decoder and other blocks
    dense = 5 * 576 * 192 * 4
    assert first["merged_delta"] == s.storage()["merged_delta"] == dense  # constant
    if name == "merge_ties":
        assert s.storage()["task_loras"] == 2 * first["task_loras"] == 2 * 5 * 4 * (4 * 192 + 576 * 4)
        # the merged delta is the TIES merge of the two kept task vectors
        tvs = [torch.cat([(sc * (b @ a)).flatten() for a, b, sc in f.values()]) for f in s.factors]
        flat = torch.cat([s.merged[k].flatten() for k in s.factors[0]])
        assert torch.allclose(flat, ties_merge(tvs, 0.2, 1.0))
        assert (flat != 0).float().mean() <= 0.4 + 1e-6  # at most the union of two 20% trims
