"""Per-image results of a run, for analysis and figures (``log_samples``, ``save_masks``).

``log_samples``: every image's scores in every evaluation row (IoU, Dice, MAE and the domain's own
metrics), written as CSV at ``<output>/samples/<method>__<backbone>__seed<seed>__<run id>.csv``
beside the record, which names it (``extra.samples_file``, relative to the output
folder). Columns: row (0 = zero-shot, t = after the t-th trained domain), domain, index, image,
then the scores. ``report`` uses them for paired bootstrap confidence intervals.

``save_masks: N``: the predicted masks (``sigmoid > 0.5`` at the image size, 0/255 PNG) of the
first N test images of every domain, from the final row, under ``<output>/masks/<run id>/<domain>/``.
Both need one process (not torchrun: each process sees only its shard).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np

from benchmark.reporting.domain_metrics import image_values
from benchmark.reporting.metrics import SCORES
from scenarios.fileio import atomic_path, atomic_write_text


class SampleLog:
    """Collects one run's per-image rows; the resume state carries them across a restart."""

    def __init__(self, output: str, run_id: str, domain_names: List[str], log: bool, masks: int):
        self.output, self.run_id, self.domain_names = Path(output), run_id, domain_names
        self.log, self.masks = log, int(masks)
        self.rows: List[Dict] = []

    def for_row(self, row: int, final: bool) -> Callable:
        """``samples`` for the evaluator: (k, dataset) -> the per-batch callable of domain k."""
        def for_domain(k: int, dataset) -> Callable:
            names = getattr(dataset, "names", None) or []
            domain = getattr(dataset, "domain_name", self.domain_names[k])

            def sink(batch, logits, per_image, stats) -> None:
                indices = [int(i) for i in batch["index"]]
                if self.log:
                    self._add(row, domain, indices, names, per_image, stats)
                if final and self.masks:
                    self._save_masks(domain, indices, names, logits)
            return sink
        return for_domain

    def _add(self, row, domain, indices, names, per_image, stats) -> None:
        extra = {m: image_values(m, values) for m, values in stats.items()}
        for j, i in enumerate(indices):
            entry = {"row": row, "domain": domain, "index": i,
                     "image": names[i] if i < len(names) else str(i)}
            entry.update({m: float(per_image[m][j]) for m in SCORES})
            entry.update({m: values[j] for m, values in extra.items()})
            self.rows.append(entry)

    def _save_masks(self, domain, indices, names, logits) -> None:
        from PIL import Image

        folder = self.output / "masks" / self.run_id / domain
        masks = (logits.detach().float().cpu().numpy() > 0).reshape(len(indices), *logits.shape[-2:])
        for j, i in enumerate(indices):
            if i >= self.masks:
                continue
            folder.mkdir(parents=True, exist_ok=True)
            stem = Path(names[i]).stem if i < len(names) else f"{i:05d}"
            with atomic_path(folder / f"{stem}.png") as tmp:
                Image.fromarray(masks[j].astype(np.uint8) * 255).save(tmp, format="PNG")

    def write(self, stem: str) -> str:
        """The CSV of every logged row; returns its path relative to the output folder."""
        import pandas as pd

        relative = Path("samples") / f"{stem}.csv"
        buffer = io.StringIO()
        pd.DataFrame(self.rows).to_csv(buffer, index=False)
        atomic_write_text(self.output / relative, buffer.getvalue())
        return relative.as_posix()
