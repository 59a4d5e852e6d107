"""The project's small SAM (``sam_small``): its configuration, pretraining and evaluation.

- :mod:`.model`: the configuration and its builder (the only place it is written).
- :mod:`.generic`: the generic synthetic distribution it is pretrained on.
- :mod:`.recipe`: the pretraining's settings (:class:`PretrainConfig`, loss weights).
- :mod:`.pretrain`: the pretraining (``run_benchmark.py pretrain-small-sam``) and the export.
- :mod:`.evaluate`: zero-shot scores (``run_benchmark.py eval-small-sam``).
- :mod:`.decoding`: batched decoding of mixed point / box prompts, shared by the two above.

Only the light :mod:`.model` is imported here (no torch); the others load torch, and OpenCV.
"""
from .model import CHECKPOINT_FILE, IMAGE_SIZE, build_sam_small

__all__ = ["CHECKPOINT_FILE", "IMAGE_SIZE", "build_sam_small"]
