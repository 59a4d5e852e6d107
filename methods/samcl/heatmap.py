"""SAMCL's point heatmap: the prompt points drawn on the token grid and Gaussian-blurred.

Faithful to the reference: the grid is indexed ``grid[x * G // S][y * G // S]`` (axis 0 is x,
the column, so the map is transposed relative to the image), every point sets its cell to 1
(set, not summed; labels ignored), then OpenCV ``GaussianBlur(ksize=9, sigma=0)`` with border
REFLECT_101, times 255. For ksize 9 OpenCV uses the fixed kernel [4, 13, 30, 51, 60, 51, 30, 13, 4]
/ 256; it is applied here as a separable torch convolution in float64, where every partial sum
is exact, so the result equals OpenCV's bit for bit.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

GAUSS9 = (4.0, 13.0, 30.0, 51.0, 60.0, 51.0, 30.0, 13.0, 4.0)


def point_grid(points: torch.Tensor, grid: int, image_size: int) -> torch.Tensor:
    """(B, K, 2) points (x, y) in S-pixel space -> (B, 1, G, G) float64 map, axis 2 = x, axis 3 = y.

    Cells are ``floor(coord * G / S)`` as the reference's ``coord * G // S`` (clamped into the grid,
    where the reference would raise for a coordinate equal to S).
    """
    if points.dim() != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must be (B, K, 2), got {tuple(points.shape)}")
    b, k, _ = points.shape
    cells = torch.div(points.double() * grid, image_size, rounding_mode="floor").long()
    cells = cells.clamp_(0, grid - 1)
    out = torch.zeros(b, 1, grid, grid, dtype=torch.float64, device=points.device)
    batch_idx = torch.arange(b, device=points.device).repeat_interleave(k)
    flat = cells.reshape(-1, 2)
    out[batch_idx, 0, flat[:, 0], flat[:, 1]] = 1.0
    return out


def gaussian_blur9(maps: torch.Tensor) -> torch.Tensor:
    """OpenCV ``GaussianBlur(m, (9, 9), 0)`` (BORDER_REFLECT_101) on (B, 1, H, W) maps."""
    kernel = torch.tensor(GAUSS9, dtype=maps.dtype, device=maps.device) / 256.0
    x = F.pad(maps, (4, 4, 4, 4), mode="reflect")  # torch 'reflect' is REFLECT_101 (edge not repeated)
    x = F.conv2d(x, kernel.view(1, 1, 9, 1))
    return F.conv2d(x, kernel.view(1, 1, 1, 9))


def point_heatmap(points: torch.Tensor, grid: int, image_size: int) -> torch.Tensor:
    """The reference's prompt map before the channel repeat: (B, 1, G, G) float32, [x, y] layout."""
    return (gaussian_blur9(point_grid(points, grid, image_size)) * 255.0).float()
