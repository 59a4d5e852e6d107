"""SAMCL / samcl_oracle strategies on the small SAM with two tiny domains and a general one."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_domain):
    from benchmark.backbones import build_backbone
    from benchmark.engine.feature_cache import FeatureCache
    from scenarios.folder import FolderSegmentationDataset

    root = tmp_path_factory.mktemp("samcl_stream")
    torch.manual_seed(0)
    bb = build_backbone("sam_small", None)
    cache = FeatureCache(root / "cache", progress=False)
    views = {"train": [], "test": []}
    for i, name in enumerate(["a", "b", "gen"]):
        for split, n in (("train", 4), ("test", 2)):
            tiny_domain(root / name, split=split, n=n, seed=10 * i + (split == "test"))
            ds = FolderSegmentationDataset(root / name, split, image_size=256, domain_index=i, domain_name=name)
            views[split].append(cache.view(bb, ds, "block6"))
    return bb, views


def _run(method, setup):
    import copy

    from benchmark.engine.evaluator import evaluate_domains
    from benchmark.core.registry import get_method
    from scenarios.stream import to_avalanche

    bb, views = setup
    torch.manual_seed(0)
    cls = get_method(method)
    strategy = cls(backbone=copy.deepcopy(bb), domain_names=["a", "b", "gen"], n_trained=2,
                   hparams={"epochs": 1, "batch_size": 2, "selector_epochs": 5, "buffer_size": 4,
                            "eval_batch_size": 4},
                   seed=0)
    assert strategy.add_general_domain("gen", views["train"][2]) == 4
    scenario = to_avalanche(views["train"][:2], views["test"])
    rows = [evaluate_domains(strategy, views["test"], batch_size=4)]
    storages = []
    for t, exp in enumerate(scenario.train_stream):
        strategy.learn_domain(exp, t)
        storages.append(strategy.storage())
        rows.append(evaluate_domains(strategy, views["test"], batch_size=4))
    return strategy, rows, storages


@pytest.fixture(scope="module")
def oracle_run(setup):
    return _run("samcl_oracle", setup)


def test_samcl_and_oracle(setup, oracle_run):
    bb, views = setup
    strat, rows, storages = oracle_run
    assert strat.module_set.names() == ["a", "b"]
    assert strat.buffer.vectors["a"].shape == (4, 192) and strat.buffer.vectors["gen"].shape == (4, 192)
    # module sizes: 2 modules after domain b, selector and buffer reported separately
    per_module = storages[0]["module_set"]
    assert storages[1]["module_set"] == 2 * per_module
    assert storages[1]["buffer"] == 3 * 4 * 192 * 4 and storages[0]["selector"] == storages[1]["selector"]
    # oracle routing: row 0 is vanilla SAM; the general domain stays vanilla throughout
    assert rows[2]["iou"][2] == rows[0]["iou"][2]
    assert rows[1]["iou"][1] == rows[0]["iou"][1]  # domain b untrained after domain a: vanilla
    assert rows[1]["iou"][0] != rows[0]["iou"][0]  # module a changed domain a's predictions
    rec = strat.extra_record()
    assert rec["routing"] == "oracle" and rec["aug_parameters"] == 5 * (10 * 192 + 192) + 1930 + 110 + 2112 + 1408
    assert len(rec["selector_confusion"]) == 3 and sum(map(sum, rec["selector_confusion"])) == 6
    assert set(rec["selector_accuracy_per_domain"]) == {"a", "b", "gen"}

    sel, sel_rows, _ = _run("samcl", setup)
    rec = sel.extra_record()
    assert rec["routing"] == "selector"
    # same module set training (same seeds) -> where the selector is right, same predictions
    if rec["selector_accuracy"] == 1.0:
        assert sel_rows[-1]["iou"] == rows[-1]["iou"]


def test_predict_groups_images_by_module(setup, oracle_run):
    """A mixed batch routed per image equals each image run alone with its module."""
    from scenarios.stream import collate_samples

    strat, _, _ = oracle_run
    bb, views = setup
    items = [views["test"][0][0], views["test"][1][0], views["test"][2][0]]
    batch = collate_samples(items)
    mixed = strat.predict(batch)
    for i, it in enumerate(items):
        alone = strat.predict(collate_samples([it]))
        torch.testing.assert_close(mixed[i:i + 1], alone, atol=1e-5, rtol=0)


def test_wrong_tap_refused():
    from methods.samcl.strategy import SAMCL

    assert SAMCL.tap_for("sam2.1_hiera_t") == "block5" and SAMCL.tap_for("sam_vit_b") == "block6"


def test_selector_accuracy_is_a_contributed_leaderboard_column(oracle_run):
    """SAMCL declares its selector-accuracy column; a run writes the spec into the record's columns
    and the value into extra under the column's key."""
    from methods.samcl.strategy import SAMCL

    (column,) = SAMCL.report_columns
    assert (column.key, column.label, column.direction) == ("selector_accuracy", "Selector acc.", "higher")
    strat, _, _ = oracle_run
    assert type(strat).report_columns == SAMCL.report_columns  # samcl_oracle inherits it
    assert 0 <= strat.extra_record()[column.key] <= 1


def test_evaluate_module_set(setup):
    """The released-set evaluator (test.py's loop): untrained module forced = vanilla forced."""
    from methods.samcl.augmodule import ModuleSet, config_for_backbone
    from methods.samcl.evaluate_official import evaluate_module_set
    from methods.samcl.selector import ModuleSelector

    bb, views = setup
    ds = views["test"][0].base
    ms = ModuleSet(config_for_backbone(bb))
    ms.add("a")
    torch.manual_seed(0)
    sel = ModuleSelector(192, 2)
    try:
        with_module = evaluate_module_set(bb, ms, sel, ["a", "general"], ds, "block6", force="a")
        vanilla = evaluate_module_set(bb, ms, sel, ["a", "general"], ds, "block6", force="general")
        picked = evaluate_module_set(bb, ms, sel, ["a", "general"], ds, "block6")
    finally:
        ms.detach()
    assert with_module["picks"] == {"a": len(ds)} and vanilla["picks"] == {"general": len(ds)}
    assert with_module["iou"] == vanilla["iou"] == picked["iou"] and 0 <= vanilla["iou"] <= 1
    assert sum(picked["picks"].values()) == len(ds)
