"""Metrics on small matrices worked out by hand (expected numbers computed on paper)."""
import math

import numpy as np
import pytest
import torch

from benchmark.reporting import metrics
from benchmark.reporting.metrics import METRIC_INFO, image_scores, metric_direction, summarize

# 3 trained domains (columns 0-2) + 1 evaluation-only domain (column 3).
R = np.array([
    [0.50, 0.40, 0.30, 0.60],   # zero-shot
    [0.80, 0.45, 0.35, 0.55],   # after domain 0
    [0.82, 0.85, 0.40, 0.50],   # after domain 1
    [0.60, 0.75, 0.90, 0.45],   # after domain 2 (final)
])


def test_summarize_by_hand():
    s = summarize(R, trained=3)
    assert set(s) == set(METRIC_INFO)
    # AA = (0.60 + 0.75 + 0.90) / 3
    assert s["AA"] == pytest.approx(0.75)
    # FM = ((0.80 - 0.60) + (0.85 - 0.75) + (0.90 - 0.90)) / 3
    assert s["FM_samcl"] == pytest.approx(0.10)
    # FT = mean(R[1,1], R[2,2]) = (0.45 + 0.40) / 2
    assert s["FT_samcl"] == pytest.approx(0.425)
    # BWT = ((0.60 - 0.80) + (0.75 - 0.85)) / 2
    assert s["BWT"] == pytest.approx(-0.15)
    # forgetting = ((max(0.80, 0.82) - 0.60) + (0.85 - 0.75)) / 2
    assert s["forgetting"] == pytest.approx(0.16)
    # FWT = ((0.45 - 0.40) + (0.40 - 0.30)) / 2
    assert s["FWT"] == pytest.approx(0.075)
    assert s["zero_shot"] == pytest.approx(0.40)
    assert s["eval_only_final"] == pytest.approx(0.45)
    assert s["eval_only_change"] == pytest.approx(-0.15)
    # the identity between SAMCL's FM and BWT
    assert s["FM_samcl"] == pytest.approx(-(3 - 1) / 3 * s["BWT"])


def test_single_functions_match_summarize():
    s = summarize(R, 3)
    assert metrics.average_accuracy(R, 3) == s["AA"]
    assert metrics.fm_samcl(R, 3) == s["FM_samcl"]
    assert metrics.ft_samcl(R, 3) == s["FT_samcl"]
    assert metrics.bwt(R, 3) == s["BWT"]
    assert metrics.fwt(R, 3) == s["FWT"]
    assert metrics.forgetting(R, 3) == s["forgetting"]


def test_lower_is_better_mae():
    M = np.array([
        [0.20, 0.30, 0.25, 0.10],
        [0.05, 0.28, 0.22, 0.12],
        [0.08, 0.04, 0.20, 0.15],
        [0.10, 0.06, 0.03, 0.18],
    ])
    s = summarize(M, 3, higher_is_better=False)
    assert s["AA"] == pytest.approx((0.10 + 0.06 + 0.03) / 3)
    # raw formulas: FM = ((0.05 - 0.10) + (0.04 - 0.06) + 0) / 3
    assert s["FM_samcl"] == pytest.approx(-0.07 / 3)
    assert s["BWT"] == pytest.approx((0.05 + 0.02) / 2)
    # forgetting uses the best (= lowest) earlier error: ((0.10 - 0.05) + (0.06 - 0.04)) / 2
    assert s["forgetting"] == pytest.approx(0.035)
    assert metric_direction("FM_samcl", higher_is_better=False) == "higher"
    assert metric_direction("BWT", higher_is_better=False) == "lower"
    assert metric_direction("AA", higher_is_better=False) == "lower"
    assert metric_direction("forgetting", higher_is_better=False) == "lower"


def test_directions_for_higher_is_better():
    expected = {"AA": "higher", "FM_samcl": "lower", "FT_samcl": "higher", "BWT": "higher",
                "forgetting": "lower", "FWT": "higher"}
    for name, direction in expected.items():
        assert metric_direction(name) == direction
    with pytest.raises(ValueError, match="unknown metric"):
        metric_direction("nope")


def test_single_trained_domain():
    R1 = np.array([[0.50, 0.60],
                   [0.70, 0.55]])
    s = summarize(R1, trained=1)
    assert s["AA"] == pytest.approx(0.70)
    assert s["FM_samcl"] == 0.0
    for name in ("FT_samcl", "BWT", "forgetting", "FWT"):
        assert math.isnan(s[name]), name
    assert s["zero_shot"] == pytest.approx(0.50)
    assert s["eval_only_final"] == pytest.approx(0.55)
    assert s["eval_only_change"] == pytest.approx(-0.05)


def test_no_eval_only_domain_gives_nan():
    s = summarize(R[:3, :2], trained=2)
    assert math.isnan(s["eval_only_final"]) and math.isnan(s["eval_only_change"])
    # T = 2: BWT = R[2,0] - R[1,0]
    assert s["BWT"] == pytest.approx(0.82 - 0.80)


@pytest.mark.parametrize("bad, trained, msg", [
    (np.zeros(4), 1, "2-D"),
    (np.zeros((3, 4)), 3, "rows"),
    (np.zeros((4, 2)), 3, "columns"),
    (np.zeros((1, 2)), 0, "positive"),
])
def test_bad_matrix(bad, trained, msg):
    with pytest.raises(ValueError, match=msg):
        summarize(bad, trained)


def test_image_scores_by_hand():
    S = 4
    logits = torch.full((4, 1, S, S), -5.0)
    masks = torch.zeros(4, S, S)
    # image 0: prediction 2x2 top-left (4 px), mask rows 0-1 x cols 0-2 (6 px)
    logits[0, 0, :2, :2] = 5.0
    masks[0, :2, :3] = 1.0
    # image 1: both empty; a logit of exactly 0 (sigmoid 0.5) is not a prediction
    logits[1, 0, 0, 0] = 0.0
    # image 2: empty prediction, 3-pixel mask
    masks[2, 3, :3] = 1.0
    # image 3: full prediction, empty mask
    logits[3] = 5.0
    s = image_scores(logits, masks)
    torch.testing.assert_close(s["iou"], torch.tensor([4 / 6, 1.0, 0.0, 0.0]))
    torch.testing.assert_close(s["dice"], torch.tensor([0.8, 1.0, 0.0, 0.0]))
    torch.testing.assert_close(s["mae"], torch.tensor([2 / 16, 0.0, 3 / 16, 1.0]))
    # (B, S, S) logits give the same
    s2 = image_scores(logits[:, 0], masks)
    torch.testing.assert_close(s2["iou"], s["iou"])


def test_image_scores_shape_error():
    with pytest.raises(ValueError, match="must both be"):
        image_scores(torch.zeros(2, 1, 4, 4), torch.zeros(2, 5, 5))
    with pytest.raises(ValueError, match=r"\(B,1,S,S\)"):
        image_scores(torch.zeros(2, 3, 4, 4), torch.zeros(2, 4, 4))
