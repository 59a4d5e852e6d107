import math

import pytest
import torch

from benchmark.config import ConfigError, load_run_config, parse_value
from methods.losses import dice_loss, focal_loss, hard_iou, sam_loss


def test_default_config_loads_and_overrides_apply():
    cfg = load_run_config(None, {"seeds": [1, 2], "hparams.epochs": 3, "methods": "a,b"})
    assert cfg.seeds == [1, 2]
    assert cfg.hparams == {"epochs": 3}
    assert cfg.methods == ["a", "b"]
    assert cfg.backbone == "sam_small"


def test_unknown_field_names_file_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("stream: synthetic\nbogus: 1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*'bogus'"):
        load_run_config(str(path))


def test_bad_seeds_is_a_clear_error():
    with pytest.raises(ConfigError, match="seeds"):
        load_run_config(None, {"seeds": ["x"]})


def test_parse_value():
    assert parse_value("3") == 3
    assert parse_value("none") is None
    assert parse_value("[a, b]") == ["a", "b"]
    assert parse_value("1e-4") == "1e-4" or math.isclose(float(parse_value("1e-4")), 1e-4)


def test_losses_on_perfect_and_wrong_predictions():
    mask = torch.zeros(2, 8, 8)
    mask[:, 2:6, 2:6] = 1
    good = (mask.unsqueeze(1) * 40 - 20)
    bad = -good
    assert torch.all(hard_iou(good, mask.unsqueeze(1)) == 1)
    assert torch.all(hard_iou(bad, mask.unsqueeze(1)) == 0)
    assert torch.all(dice_loss(good, mask.unsqueeze(1)) < 1e-3)
    assert torch.all(focal_loss(bad, mask.unsqueeze(1)) > focal_loss(good, mask.unsqueeze(1)))
    iou_pred = torch.ones(2, 1)
    assert sam_loss(good, iou_pred, mask) < sam_loss(bad, iou_pred, mask)
    # The IoU head is trained towards the actual IoU: predicting 0 for a perfect mask costs 1 per image.
    assert torch.isclose(sam_loss(good, torch.zeros(2, 1), mask) - sam_loss(good, iou_pred, mask),
                         torch.tensor(2.0), atol=1e-4)
