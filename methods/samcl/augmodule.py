"""SAMCL's AugModule and the module set that attaches to a frozen SAM / SAM2 image encoder.

In each adapted block the attention output becomes ``attn(x) + B_l(LN1_l(A x) + LN2_l(P))``, where
``x`` is the attention's input (normed tokens, window-partitioned in windowed blocks) and ``P`` the
prompt features: the point heatmap repeated to r channels, then Linear(r, r) + LayerNorm(r) + ReLU.
For SAM ViT two zero-initialised neck linears add ``U1(P)`` to the last block's output and ``U2(P)``
to the image embedding. ``B_l``, ``U1`` and ``U2`` start at zero, so an untrained module is SAM.

Reference quirks, on by default because the released checkpoints were trained with them:
- ``transposed_neck``: the neck terms use the heatmap in its [x, y] layout, i.e. transposed relative
  to the image (the attention path uses it aligned with the tokens).
- ``window_map="resize"``: a windowed block gets the whole map nearest-resized to the window size,
  the same map in every window. ``window_map="partition"`` instead gives each window its own part of
  the (zero-padded) map, aligned with the tokens.

Attachment does not copy the backbone: :class:`ModuleSet` registers one forward hook on each adapted
block's ``attn`` (parameter names of the backbone are unchanged); the hook adds the delta of the
module made active with ``module_set.active(name, points)`` and returns ``attn(x)`` untouched when
no module is active.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from methods.samcl.heatmap import point_heatmap


@dataclass(frozen=True)
class AugConfig:
    """Shape of an AugModule and the quirk options; saved with a module set."""

    width: int                          # C of the adapted blocks
    blocks: tuple[int, ...]             # adapted encoder block indices
    rank: int = 10
    neck_dims: tuple[int, int] | None = None  # (U1 out, U2 out) for SAM ViT; None: no neck linears
    grid: int = 64                      # token grid of the adapted blocks (heatmap side)
    image_size: int = 1024
    transposed_neck: bool = True        # reference quirk, see module docstring
    window_map: str = "resize"          # "resize" (reference) or "partition"

    def __post_init__(self) -> None:
        if self.window_map not in ("resize", "partition"):
            raise ValueError(f"window_map must be 'resize' or 'partition', got {self.window_map!r}")
        object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        if self.neck_dims is not None:
            object.__setattr__(self, "neck_dims", tuple(int(d) for d in self.neck_dims))

    @property
    def tap(self) -> str:
        """The feature tap the modules start from: the last block before the adapted ones."""
        return f"block{min(self.blocks) - 1}"

    def to_dict(self) -> dict:
        return asdict(self)


def vit_config(width: int = 768, depth: int = 12, neck_dim: int = 256, grid: int = 64,
               image_size: int = 1024, rank: int = 10, **quirks) -> AugConfig:
    """SAM ViT: the last five blocks (7-11 for depth 12), with neck linears."""
    return AugConfig(width=width, blocks=tuple(range(depth - 5, depth)), rank=rank,
                     neck_dims=(width, neck_dim), grid=grid, image_size=image_size, **quirks)


def hiera_t_config(rank: int = 10, **quirks) -> AugConfig:
    """SAM2.1 Hiera-T: trunk blocks 6-9 (width 384, 64x64 tokens at 1024 px), no neck linears."""
    return AugConfig(width=384, blocks=(6, 7, 8, 9), rank=rank, neck_dims=None, grid=64,
                     image_size=1024, **quirks)


def config_for_backbone(backbone: nn.Module, rank: int = 10, **quirks) -> AugConfig:
    """AugConfig for a benchmark SAMBackbone (``sam_*`` ViT or ``sam2.1_hiera_t``)."""
    name = getattr(backbone, "name", "")
    if name.startswith("sam2"):
        if name != "sam2.1_hiera_t":
            raise ValueError(f"SAMCL's SAM2 AugModule is defined for sam2.1_hiera_t only, not {name}")
        return hiera_t_config(rank=rank, **quirks)
    blocks = backbone.encoder_blocks
    width = blocks[0].attn.qkv.in_features
    neck_dim = backbone.sam.image_encoder.neck[0].out_channels
    return vit_config(width=width, depth=len(blocks), neck_dim=neck_dim, grid=backbone.embed_size,
                      image_size=backbone.image_size, rank=rank, **quirks)


class AugModule(nn.Module):
    """One domain's adapter. Parameter names follow the paper's pieces (A, B, norm1, norm2, ...)."""

    def __init__(self, config: AugConfig) -> None:
        super().__init__()
        c, r, n = config.width, config.rank, len(config.blocks)
        self.config = config
        self.A = nn.Linear(c, r)
        nn.init.kaiming_uniform_(self.A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.A.bias)
        self.B = nn.ModuleList(nn.Linear(r, c) for _ in range(n))
        self.norm1 = nn.ModuleList(nn.LayerNorm(r) for _ in range(n))
        self.norm2 = nn.ModuleList(nn.LayerNorm(r) for _ in range(n))
        self.prompt = nn.Linear(r, r)
        self.prompt_norm = nn.LayerNorm(r)
        if config.neck_dims is not None:
            self.up_pre = nn.Linear(r, config.neck_dims[0])
            self.up_post = nn.Linear(r, config.neck_dims[1])
            zero = [*self.B, self.up_pre, self.up_post]
        else:
            self.up_pre = self.up_post = None
            zero = list(self.B)
        for lin in zero:
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        self._slot = {b: i for i, b in enumerate(config.blocks)}

    def prompt_features(self, heatmap: torch.Tensor) -> torch.Tensor:
        """(B, 1, G, G) heatmap in [x, y] layout -> (B, G, G, r) prompt features, same layout."""
        rep = heatmap.to(self.prompt.weight.dtype).expand(-1, self.config.rank, -1, -1)
        return F.relu(self.prompt_norm(self.prompt(rep.permute(0, 2, 3, 1))))

    def _map_for(self, prompt_xy: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Prompt features laid out like the attention input ``x`` (tokens or windows)."""
        tokens = prompt_xy.transpose(1, 2)  # [x, y] -> [row = y, col = x], aligned with the tokens
        b, g = tokens.shape[0], tokens.shape[1]
        if x.shape[0] == b and x.shape[1] == g and x.shape[2] == g:
            return tokens
        ws = x.shape[1]
        n_win = x.shape[0] // b
        if self.config.window_map == "resize":
            small = F.interpolate(tokens.permute(0, 3, 1, 2), size=(ws, ws), mode="nearest")
            return small.permute(0, 2, 3, 1).repeat_interleave(n_win, dim=0)
        pad = (ws - g % ws) % ws
        padded = F.pad(tokens, (0, 0, 0, pad, 0, pad))
        hp = (g + pad) // ws
        win = padded.view(b, hp, ws, hp, ws, -1).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws, ws, tokens.shape[-1])
        if win.shape[0] != x.shape[0]:
            raise ValueError(f"cannot lay the {g}x{g} prompt map out like attention input {tuple(x.shape)}")
        return win

    def block_delta(self, block: int, x: torch.Tensor, prompt_xy: torch.Tensor) -> torch.Tensor:
        """The term added to ``attn(x)`` in encoder block ``block``."""
        i = self._slot[block]
        p = self._map_for(prompt_xy, x)
        return self.B[i](self.norm1[i](self.A(x)) + self.norm2[i](p))

    def _neck_term(self, lin: nn.Linear, prompt_xy: torch.Tensor) -> torch.Tensor:
        """(B, D, G, G) channels-first term; [x, y]-indexed (transposed) when the quirk is on."""
        p = prompt_xy if self.config.transposed_neck else prompt_xy.transpose(1, 2)
        return lin(p).permute(0, 3, 1, 2)

    def neck_pre(self, x: torch.Tensor, prompt_xy: torch.Tensor) -> torch.Tensor:
        """Last block's output, channels-first (B, C, h, w) as the neck takes it, + U1(P)."""
        if self.up_pre is None:
            return x
        return x + self._neck_term(self.up_pre, prompt_xy)

    def neck_post(self, embed: torch.Tensor, prompt_xy: torch.Tensor) -> torch.Tensor:
        """Image embedding (B, D, h, w) + U2(P)."""
        if self.up_post is None:
            return embed
        return embed + self._neck_term(self.up_post, prompt_xy)


def count_parameters(module: nn.Module, include_layernorm: bool = False) -> int:
    """Parameters of a module; LayerNorms excluded by default (the paper's count)."""
    skip = set()
    if not include_layernorm:
        skip = {id(p) for m in module.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()}
    return sum(p.numel() for p in module.parameters() if id(p) not in skip)


@dataclass
class _Active:
    module: AugModule | None = None
    heatmap: torch.Tensor | None = None
    handles: list = field(default_factory=list)


class ModuleSet(nn.Module):
    """All domains' AugModules (in memory) sharing one set of hooks on the backbone's blocks."""

    def __init__(self, config: AugConfig) -> None:
        super().__init__()
        self.config = config
        self.aug = nn.ModuleDict()
        self._state = _Active()

    # --- modules -------------------------------------------------------------------------------
    def add(self, name: str, module: AugModule | None = None) -> AugModule:
        if name in self.aug:
            raise ValueError(f"module set already has a module for domain {name!r}")
        module = module if module is not None else AugModule(self.config)
        if module.config != self.config:
            raise ValueError(f"module for {name!r} has config {module.config}, set has {self.config}")
        self.aug[name] = module
        return module

    def names(self) -> list[str]:
        return list(self.aug.keys())

    def __getitem__(self, name: str) -> AugModule:
        if name not in self.aug:
            raise KeyError(f"no AugModule for domain {name!r} (have {self.names()})")
        return self.aug[name]

    # --- attachment ------------------------------------------------------------------------------
    def attach(self, blocks: nn.ModuleList) -> "ModuleSet":
        """Hook the ``attn`` of each adapted block (no copy of the backbone)."""
        self.detach()
        if max(self.config.blocks) >= len(blocks):
            raise ValueError(f"adapted blocks {self.config.blocks} exceed the encoder's {len(blocks)} blocks")
        for b in self.config.blocks:
            attn = blocks[b].attn
            self._state.handles.append(attn.register_forward_hook(self._make_hook(b)))
        return self

    def detach(self) -> None:
        for h in self._state.handles:
            h.remove()
        self._state.handles.clear()

    @property
    def attached(self) -> bool:
        return bool(self._state.handles)

    def _make_hook(self, block: int):
        def hook(_mod: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
            st = self._state
            if st.module is None:
                return None  # vanilla: output unchanged
            prompt = st.module.prompt_features(st.heatmap)
            return output + st.module.block_delta(block, args[0], prompt)
        return hook

    # --- activation ------------------------------------------------------------------------------
    def heatmap(self, points: torch.Tensor) -> torch.Tensor:
        return point_heatmap(points, self.config.grid, self.config.image_size)

    @contextmanager
    def active(self, name: str | None, points: torch.Tensor | None = None) -> Iterator[AugModule | None]:
        """Within the block, forwards of the hooked backbone use module ``name`` (None: vanilla SAM)
        with the heatmap of ``points`` (B, K, 2) in image pixels."""
        if not self.attached and name is not None:
            raise RuntimeError("ModuleSet.attach(blocks) must be called before activating a module")
        prev = (self._state.module, self._state.heatmap)
        if name is None:
            self._state.module, self._state.heatmap = None, None
        else:
            if points is None:
                raise ValueError("points are required to activate an AugModule")
            self._state.module, self._state.heatmap = self[name], self.heatmap(points)
        try:
            yield self._state.module
        finally:
            self._state.module, self._state.heatmap = prev

    def pre_neck(self, x: torch.Tensor) -> torch.Tensor:
        """For ``features_from(..., pre_neck=...)`` (channels-first last-block output): identity
        unless a module is active."""
        st = self._state
        if st.module is None:
            return x
        return st.module.neck_pre(x, st.module.prompt_features(st.heatmap))

    def post_neck(self, embed: torch.Tensor) -> torch.Tensor:
        st = self._state
        if st.module is None:
            return embed
        return st.module.neck_post(embed, st.module.prompt_features(st.heatmap))
