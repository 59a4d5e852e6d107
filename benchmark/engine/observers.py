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

        self.writer = SummaryWriter(log_dir=str(Path(self.folder) / _run_name(run)))

    def on_row(self, run, index: int, row: Dict[str, List[float]]) -> None:
        for metric, values in row.items():
            for name, value in zip(run.stream.domain_names, values):
                self.writer.add_scalar(f"R_{metric}/{name}", value, index)

    def on_losses(self, run, first: int, losses: Sequence[float]) -> None:
        for k, loss in enumerate(losses, start=first):
            self.writer.add_scalar("loss/epoch", loss, k)

    def on_end(self, run) -> None:
        self.writer.close()


def _run_name(run) -> str:
    return f"{run.method}__{run.cfg.backbone}__seed{run.seed}__{run.run_id[:8]}"


class CSVLog(Observer):
    """``<folder>/<run>/losses.csv`` (epoch, loss) and ``rows.csv`` (row, domain, score, value),
    appended as the run goes (rank 0 only). Plain csv files: Avalanche's CSVLogger writes its own
    classification metrics, not a segmentation run's losses and R rows."""

    def __init__(self, folder: str):
        self.folder = Path(folder)

    def on_start(self, run) -> None:
        self.dir = self.folder / _run_name(run)
        self.dir.mkdir(parents=True, exist_ok=True)
        for name, header in (("losses.csv", ["epoch", "loss"]),
                             ("rows.csv", ["row", "domain", "score", "value"])):
            if not (self.dir / name).exists():  # a resumed run appends to its files
                self._append(name, [header])

    def _append(self, name: str, rows: List[list]) -> None:
        import csv

        with open(self.dir / name, "a", encoding="utf-8", newline="") as fh:
            csv.writer(fh).writerows(rows)

    def on_row(self, run, index: int, row: Dict[str, List[float]]) -> None:
        self._append("rows.csv", [[index, name, metric, value] for metric, values in row.items()
                                  for name, value in zip(run.stream.domain_names, values)])

    def on_losses(self, run, first: int, losses: Sequence[float]) -> None:
        self._append("losses.csv", [[k, loss] for k, loss in enumerate(losses, start=first)])


class WandB(Observer):
    """A Weights & Biases run per benchmark run in project ``project`` (rank 0 only): the config
    and resolved hyper-parameters, ``R_<score>/<domain>`` per row and ``loss/epoch``. The wandb
    library directly: Avalanche's WandBLogger logs its own evaluation plugin's metrics. Offline:
    ``WANDB_MODE=offline`` (then ``wandb sync`` uploads)."""

    def __init__(self, project: str):
        self.project = project

    def on_start(self, run) -> None:
        import wandb

        self.wandb = wandb.init(project=self.project, name=_run_name(run), reinit="create_new",
                                config={"run": run.cfg.to_dict(), "hparams": dict(run.resolved.hparams),
                                        "method": run.method, "seed": run.seed, "run_id": run.run_id})

    def on_row(self, run, index: int, row: Dict[str, List[float]]) -> None:
        self.wandb.log({f"R_{metric}/{name}": value for metric, values in row.items()
                        for name, value in zip(run.stream.domain_names, values)} | {"row": index})

    def on_losses(self, run, first: int, losses: Sequence[float]) -> None:
        for k, loss in enumerate(losses, start=first):
            self.wandb.log({"loss/epoch": loss, "epoch": k})

    def on_end(self, run) -> None:
        self.wandb.finish()


def default_observers(cfg, progress: bool) -> List[Observer]:
    observers: List[Observer] = [ResumeNotice()]
    if progress:
        observers.append(ProgressBar())
    if distributed.is_main():
        for value, cls in ((cfg.tensorboard, TensorBoard), (cfg.csv_log, CSVLog), (cfg.wandb, WandB)):
            if value:
                observers.append(cls(value))
    return observers
