"""The segmentation losses every method trains with (benchmark/core/losses.py)."""
import torch

from benchmark.core.losses import dice_loss, focal_loss, hard_iou, sam_loss


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
