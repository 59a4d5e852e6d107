"""L2P: Learning to Prompt (Wang et al., CVPR 2022) with SAM's mask decoder as the prompted model.

A pool of ``pool_size`` learnable prompts (each ``prompt_length`` tokens of the decoder's width)
with one key each. The query is a frozen feature: the image embedding (the ``neck`` tap) averaged
over space. The ``top_k`` prompts whose keys are most cosine-similar to the query are appended to
the sparse prompt embeddings that the mask decoder concatenates to its output tokens, so the whole
of SAM stays frozen. The loss adds L2P's key-query pull ``pull_weight * (1 - cos(q, k))`` over the
chosen keys. Defaults are L2P's: M = 10, N = 5, L_p = 5, pull weight 0.5.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Dict

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.core.registry import register_method
from methods.template import SAMStrategy


class PromptPool(nn.Module):
    """Prompts (M, L_p, C) and keys (M, C), initialised uniform(-1, 1) as in L2P."""

    def __init__(self, pool_size: int, length: int, dim: int, top_k: int):
        super().__init__()
        if not 1 <= top_k <= pool_size or length < 1:
            raise ValueError(f"l2p: need 1 <= top_k <= pool_size and prompt_length >= 1, got "
                             f"top_k={top_k}, pool_size={pool_size}, prompt_length={length}")
        self.top_k = top_k
        self.prompts = nn.Parameter(torch.empty(pool_size, length, dim).uniform_(-1, 1))
        self.keys = nn.Parameter(torch.empty(pool_size, dim).uniform_(-1, 1))

    def forward(self, query: torch.Tensor):
        """query (B, C) -> (tokens (B, top_k * L_p, C), pull (B,) = mean of 1 - cos over chosen keys,
        chosen indices (B, top_k))."""
        sim = F.normalize(query, dim=-1) @ F.normalize(self.keys, dim=-1).t()   # (B, M)
        chosen = sim.topk(self.top_k, dim=1).indices                            # (B, N)
        tokens = self.prompts[chosen].flatten(1, 2)                             # (B, N*L_p, C)
        pull = (1 - sim.gather(1, chosen)).mean(1)
        return tokens, pull, chosen


@register_method("l2p")
class L2P(SAMStrategy):
    """L2P-style prompt pool: query-key chosen prompts appended to SAM's decoder tokens."""
    relative_cost = 0.2  # a run's time against lora's (the default benchmark's records)

    tap = "neck"
    defaults = {"pool_size": 10, "prompt_length": 5, "top_k": 5, "pull_weight": 0.5}

    def build(self) -> None:
        self._prompt_encoder = self.backbone.prompt_encoder
        dim = int(self._prompt_encoder.embed_dim)
        self.parts["pool"] = PromptPool(int(self.hp["pool_size"]), int(self.hp["prompt_length"]), dim,
                                        int(self.hp["top_k"]))
        self._pull = torch.zeros(())
        self.last_chosen: torch.Tensor | None = None

    @staticmethod
    def query_of(enc: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The frozen query: the image embedding averaged over space, (B, C)."""
        return enc["image_embed"].detach().mean(dim=(2, 3))

    @contextmanager
    def _appended(self, tokens: torch.Tensor):
        """While active, every prompt-encoder call returns its sparse embeddings with the next
        images' chosen prompt tokens appended (SAM decodes one image per call, SAM2 a batch)."""
        cursor = [0]

        def hook(module, args, out):
            sparse, dense = out
            b = sparse.shape[0]
            extra = tokens[cursor[0]:cursor[0] + b].to(sparse.dtype)
            cursor[0] += b
            return torch.cat([sparse, extra], dim=1), dense

        handle = self._prompt_encoder.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()
        if cursor[0] != tokens.shape[0]:
            raise RuntimeError(f"l2p: the prompt encoder saw {cursor[0]} images, expected {tokens.shape[0]}")

    def run_model(self, batch: Dict[str, Any]):
        enc = self.encode(self.backbone_features(batch), batch)
        tokens, pull, chosen = self.parts["pool"](self.query_of(enc))
        self._pull, self.last_chosen = pull.sum(), chosen.detach()
        with self._appended(tokens):
            return self.decode(enc, batch)

    def criterion(self):
        return super().criterion() + float(self.hp["pull_weight"]) * self._pull
