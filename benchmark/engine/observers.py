"""Observers of a run: progress bars and TensorBoard watch the run's phases; they never change it.

A :class:`Run` calls each observer's hooks in order; every hook is optional (the base class does
nothing), so another sink (a CSV or W&B logger) is one more subclass.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

from benchmark.core import distributed


class Observer:
    def on_start(self, run) -> None:
        """Before the first phase (``run.resolved``, ``run.views`` are set)."""

    def on_resume(self, run, done: int) -> None:
        """After a saved state was restored; ``done`` domains are already trained."""

    def on_images(self, n: int) -> None:
        """``n`` more images were trained on or evaluated."""

    def on_row(self, run, index: int, row: Dict[str, List[float]]) -> None:
        """Row ``index`` of the score matrices was evaluated."""

    def on_losses(self, run, first: int, losses: Sequence[float]) -> None:
        """Epoch losses ``first``, ``first + 1``, ... were appended by the last domain."""

    def on_end(self, run) -> None:
        """After the last phase (also when the run failed)."""


class ProgressBar(Observer):
    """One tqdm bar per run over its images: every evaluation row and every trained domain."""

    def on_start(self, run) -> None:
        from tqdm.auto import tqdm

        train, test, _ = run.views
        n_eval = sum(len(ds) for ds in test)
        self.bar = tqdm(total=(run.stream.trained + 1) * n_eval + sum(len(d) for d in train),
                        desc=f"{run.method} seed {run.seed}", unit="img", leave=False,
                        disable=not distributed.is_main())

    def on_resume(self, run, done: int) -> None:
        train, test, _ = run.views
        self.bar.update((done + 1) * sum(len(ds) for ds in test)
                        + sum(len(train[t]) for t in range(done)))

    def on_images(self, n: int) -> None:
        self.bar.update(n)

    def on_end(self, run) -> None:
        self.bar.close()


class ResumeNotice(Observer):
    """Says on the console that a run continues from a saved state."""

    def on_resume(self, run, done: int) -> None:
        if distributed.is_main():
            print(f"  {run.method} seed {run.seed}: resuming after domain {done}/"
                  f"{run.stream.trained} ({run.state_dir})", flush=True)


class TensorBoard(Observer):
    """Scalars under ``<folder>/<method>__<backbone>__seed<seed>__<run id>/`` (rank 0 only):
    ``R_<score>/<domain>`` per evaluated row and ``loss/epoch``."""

    def __init__(self, folder: str):
        self.folder = folder

    def on_start(self, run) -> None:
        from torch.utils.tensorboard import SummaryWriter

        name = f"{run.method}__{run.cfg.backbone}__seed{run.seed}__{run.run_id[:8]}"
        self.writer = SummaryWriter(log_dir=str(Path(self.folder) / name))

    def on_row(self, run, index: int, row: Dict[str, List[float]]) -> None:
        for metric, values in row.items():
            for name, value in zip(run.stream.domain_names, values):
                self.writer.add_scalar(f"R_{metric}/{name}", value, index)

    def on_losses(self, run, first: int, losses: Sequence[float]) -> None:
        for k, loss in enumerate(losses, start=first):
            self.writer.add_scalar("loss/epoch", loss, k)

    def on_end(self, run) -> None:
        self.writer.close()


def default_observers(cfg, progress: bool) -> List[Observer]:
    observers: List[Observer] = [ResumeNotice()]
    if progress:
        observers.append(ProgressBar())
    if cfg.tensorboard and distributed.is_main():
        observers.append(TensorBoard(cfg.tensorboard))
    return observers
