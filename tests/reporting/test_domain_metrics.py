"""The domains' own metrics: per-image statistics reduce to pysodmetrics' own dataset values, BER
by hand, stream declarations, the evaluator's matrices and the per-domain tables."""
import math

import numpy as np
import pytest
import py_sod_metrics as sod
import torch

from benchmark.engine.evaluator import evaluate_domains
from benchmark.reporting.domain_metrics import (DOMAIN_METRICS, as_uint8_maps, check_metric_names,
                                                 image_stats, image_values, subset_summary)
from scenarios.config import load_stream_config
from scenarios.fileio import ConfigError


def _maps(n=4, size=48, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    preds, gts = [], []
    for i in range(n):
        cy, cx, r = rng.integers(12, 36), rng.integers(12, 36), rng.integers(6, 12)
        gt = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype(np.uint8) * 255
        blur = np.clip(gt.astype(float) + rng.normal(0, 60, gt.shape), 0, 255)
        preds.append(blur.astype(np.uint8))
        gts.append(gt)
    return np.stack(preds), np.stack(gts)


@pytest.mark.parametrize("name,cls,pick", [
    ("s_measure", sod.Smeasure, lambda r: r["sm"]),
    ("e_measure", sod.Emeasure, lambda r: np.mean(r["em"]["curve"])),
    ("wf_measure", sod.WeightedFmeasure, lambda r: r["wfm"]),
])
def test_sample_mean_metrics_equal_the_library_dataset_value(name, cls, pick):
    preds, gts = _maps()
    total = image_stats([name], preds, gts)[name].sum(axis=0)
    ours = DOMAIN_METRICS[name].reduce(total, len(preds))
    lib = cls()
    for p, g in zip(preds, gts):
        lib.step(pred=p, gt=g)
    assert ours == pytest.approx(float(pick(lib.get_results())), abs=1e-12)


def test_ber_sums_confusion_over_the_domain_like_the_library():
    preds, gts = _maps(seed=3)
    total = image_stats(["ber"], preds, gts)["ber"].sum(axis=0)
    lib = sod.FmeasureV2(metric_handlers={"ber": sod.BERHandler(
        with_dynamic=False, with_adaptive=False, with_binary=True, sample_based=False)})
    for p, g in zip(preds, gts):
        lib.step(pred=p, gt=g)
    assert DOMAIN_METRICS["ber"].reduce(total, len(preds)) == pytest.approx(
        float(lib.get_results()["ber"]["binary"]), abs=1e-12)


def test_ber_by_hand():
    gt = np.array([[255, 255, 0, 0]] * 4, dtype=np.uint8)       # 8 positives, 8 negatives
    pred = np.array([[255, 0, 0, 0]] * 3 + [[255, 255, 255, 0]], dtype=np.uint8)
    # TP = 3 + 2 = 5 of 8, TN = 2 * 3 + 1 = 7 of 8: BER = 1 - (5/8 + 7/8) / 2 = 0.25
    stats = image_stats(["ber"], pred[None], gt[None])["ber"]
    assert image_values("ber", stats) == [pytest.approx(0.25)]


def test_uint8_maps_are_the_sigmoid_and_the_binary_mask():
    logits = torch.tensor([[[0.0, 100.0], [-100.0, 0.0]]])
    masks = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    pred, gt = as_uint8_maps(logits, masks)
    assert pred.tolist() == [[[128, 255], [0, 128]]] and gt.tolist() == [[[255, 0], [255, 0]]]


def test_subset_summary_uses_only_the_declaring_domains():
    R = np.array([[.1, .1, .1], [.5, .2, .9], [.4, .6, .9], [.3, .5, .7]])
    out = subset_summary(R, 3, [0, 2], True)
    assert out["AA"] == pytest.approx((.3 + .7) / 2)
    assert out["FM_samcl"] == pytest.approx(((.5 - .3) + (.7 - .7)) / 2)


def _stream(tmp_path, domains):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nimage_size: 64\ndomains: " + domains + "\n"
                    "synthetic: {train_per_domain: 1, test_per_domain: 1}\n")
    return path


def test_stream_declares_metrics_per_domain(tmp_path):
    cfg = load_stream_config(_stream(tmp_path, "[polyp, {name: shadow, metrics: [ber]}]"))
    assert cfg.domain_metrics() == {"shadow": ["ber"]}
    assert "metrics" not in cfg.to_dict()["domains"][0]  # undeclared: run ids as before


def test_unknown_metric_names_the_file_domain_and_close_name(tmp_path):
    path = _stream(tmp_path, "[{name: shadow, metrics: [bre]}]")
    cfg = load_stream_config(path)
    with pytest.raises(ConfigError, match=r"s\.yaml: domain 'shadow': unknown metric 'bre' \(did you mean ber\?\)"):
        check_metric_names(cfg.domain_metrics(), cfg.source)


def test_metric_listed_twice_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="metric 'ber' listed twice"):
        load_stream_config(_stream(tmp_path, "[{name: shadow, metrics: [ber, ber]}]"))


class _Fixed:
    """A strategy stand-in whose prediction is the batch's own noisy mask."""
    device = torch.device("cpu")
    model = torch.nn.Identity()

    def predict(self, batch):
        return (batch["mask"] - 0.5) * 8 + batch["noise"]

    def upscale(self, logits):
        return logits


def _dataset(n, seed):
    g = torch.Generator().manual_seed(seed)
    return [{"mask": (torch.rand(1, 16, 16, generator=g) > 0.6).float(),
             "noise": torch.randn(1, 16, 16, generator=g) * 3} for _ in range(n)]


def test_evaluator_fills_declared_domains_and_nan_elsewhere():
    data = [_dataset(3, 0), _dataset(2, 1)]
    scores = evaluate_domains(_Fixed(), data, batch_size=2, metrics=[["ber", "s_measure"], []])
    assert sorted(scores) == ["ber", "dice", "iou", "mae", "s_measure"]
    assert 0 <= scores["ber"][0] <= 1 and 0 <= scores["s_measure"][0] <= 1
    assert math.isnan(scores["ber"][1]) and math.isnan(scores["s_measure"][1])
    plain = evaluate_domains(_Fixed(), data, batch_size=2)
    assert sorted(plain) == ["dice", "iou", "mae"] and plain["iou"] == scores["iou"]


def test_report_writes_a_table_per_domain_metric(tmp_path):
    from benchmark.reporting.domain_tables import write_domain_metric_tables
    from benchmark.reporting.records import RunRecord, load_records, write_record

    stream = {"name": "s", "domains": ["a", "b", "coco"], "trained": 2, "eval_only": ["coco"]}
    nan = float("nan")
    iou = np.full((3, 3), 0.5)
    ber = [[nan, 0.30, nan], [nan, 0.40, nan], [nan, 0.10, nan]]  # only b declares BER
    paths = [write_record(RunRecord(method="m", backbone="sam_small", stream=stream, seed=seed,
                                    matrices={"iou": iou, "ber": np.array(ber) + seed / 100}),
                          tmp_path / "r") for seed in (0, 2)]
    written = {p.name: p for p in write_domain_metric_tables(load_records(paths), tmp_path / "t")}
    text = written["per_domain_ber.md"].read_text()
    header = [c.strip() for c in text.splitlines()[0].split("|")]
    assert "b" in header and "a" not in header and "coco (eval)" not in header  # declaring only
    # final BER 0.10 and 0.12 -> 11.00; FM = R[2, b] - R[T, b] = 0 (b is the last trained domain)
    assert "11.00" in text and "lower is better" in text
    csv = written["per_domain_ber.csv"].read_text().splitlines()
    assert csv[0] == "method,backbone,stream,b,AA,FM" and csv[1].startswith("m,sam_small,s,11.0,11.0,0.0")
