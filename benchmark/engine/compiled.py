"""The run option ``compile``: ``torch.compile`` on the modules a training step runs from a cached
tap (the encoder blocks and the mask decoder's transformer), and the seconds spent compiling.

The modules are compiled in place (``nn.Module.compile``), so parameter names, state dicts,
hooks (SAMCL's AugModules) and peft-wrapped layers stay; a module is compiled when it first runs,
again when its inputs' shapes or the Python state it reads change (a smaller last batch, another
active AugModule). Compilation happens inside training and evaluation; ``CompileClock`` measures
it so that a record keeps it apart (``timing.compile``) and ``throughput`` leaves it out of the rates.
"""
from __future__ import annotations

import contextlib
from typing import Dict

#: the ``torch.compile`` backend (tests use "eager": Dynamo's capture without code generation)
BACKEND = "inductor"


#: compiled variants Dynamo keeps per code object before it runs the rest uncompiled. All the
#: modules share ``nn.Module._call_impl``, and hooks that differ per block (SAMCL's AugModule reads
#: its block's slot) give each block variants of its own, for each batch shape: torch's default
#: of 8 would leave most of ViT-B's blocks uncompiled
RECOMPILE_LIMIT = 128


def compile_backbone(backbone) -> int:
    """Compile the trained path of ``backbone`` in place; returns how many modules."""
    import torch._dynamo
    from torch._dynamo.utils import set_compilation_metrics_limit

    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
    config.accumulated_recompile_limit = max(config.accumulated_recompile_limit, 8 * RECOMPILE_LIMIT)
    set_compilation_metrics_limit(8 * RECOMPILE_LIMIT)  # CompileClock reads every one of a phase
    decoder = getattr(backbone.sam, backbone.decoder_names[0])
    modules = [*backbone.encoder_blocks, decoder.transformer]
    for module in modules:
        module.compile(backend=BACKEND)
    return len(modules)


def _compiled() -> tuple[float, int]:
    """Seconds and count of the compilations recorded since the metrics were last cleared."""
    from torch._dynamo.utils import get_compilation_metrics

    metrics = get_compilation_metrics()
    total = 0.0
    for m in metrics:
        total += float(getattr(m, "entire_frame_compile_time_s", None) or 0.0)
        total += float(getattr(m, "backward_cumulative_compile_time_us", None) or 0) / 1e6
    return total, len(metrics)


class CompileClock:
    """Seconds spent compiling, per phase: ``with clock.phase("train"): ...``; ``seconds`` is
    ``{"train": s, "eval": s, "compilations": n}`` (n: graphs compiled, recompilations included).
    Off (``enabled`` False): nothing is measured."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.seconds: Dict[str, float] = {"train": 0.0, "eval": 0.0, "compilations": 0}

    @contextlib.contextmanager
    def phase(self, name: str):
        if not self.enabled:
            yield
            return
        from torch._dynamo.utils import clear_compilation_metrics

        clear_compilation_metrics()
        try:
            yield
        finally:
            seconds, count = _compiled()
            self.seconds[name] += seconds
            self.seconds["compilations"] += count
            clear_compilation_metrics()
