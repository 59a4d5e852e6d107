"""Loading ahead (run option ``prefetch``): the next batches are read, collated, pinned and copied to
the device in a background thread while the current one is computed.

On CUDA the copies run on a side stream; the computing stream waits for a batch's copy (an event)
before using it, and the batch's tensors are recorded on that stream so that the allocator keeps
their memory until the computation is done with them. The batches and their order are the loader's:
only loaders whose order does not draw from the global random generators may be wrapped
(``prefetchable``), so that a background thread cannot change what the main thread draws.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, SequentialSampler

from scenarios.stream import to_device

_END = object()


def prefetchable(loader: Any) -> bool:
    """True for a plain ``DataLoader`` that shuffles with its own generator or not at all."""
    if type(loader) is not DataLoader:  # e.g. Avalanche's replay loader draws from the global RNG
        return False
    return loader.generator is not None or isinstance(loader.sampler, SequentialSampler)


class Prefetcher:
    """Iterates ``loader``'s batches already on ``device`` (``to_device``), up to ``depth`` batches
    ahead of the consumer."""

    def __init__(self, loader: DataLoader, device: torch.device | str, depth: int):
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self.loader, self.device, self.depth = loader, torch.device(device), depth

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        ready: queue.Queue = queue.Queue(maxsize=self.depth)
        stop = threading.Event()
        thread = threading.Thread(target=self._load, args=(ready, stop), daemon=True, name="prefetch")
        thread.start()
        try:
            while True:
                got = ready.get()
                if got is _END:
                    return
                if isinstance(got, BaseException):
                    raise got
                batch, copied = got
                if copied is not None:  # CUDA: the computing stream waits for the copy
                    current = torch.cuda.current_stream(self.device)
                    current.wait_event(copied)
                    _record_stream(batch, current)
                yield batch
        finally:
            stop.set()
            thread.join()

    def _load(self, ready: queue.Queue, stop: threading.Event) -> None:
        """The background thread: every batch of the loader to the device, then the end mark (or
        the exception that stopped it)."""
        cuda = self.device.type == "cuda"
        try:
            side = torch.cuda.Stream(self.device) if cuda else None
            for batch in self.loader:
                copied = None
                if cuda:
                    with torch.cuda.stream(side):
                        batch = to_device(batch, self.device)
                        copied = torch.cuda.Event()
                        copied.record(side)
                else:
                    batch = to_device(batch, self.device)
                if not _put(ready, (batch, copied), stop):
                    return
            _put(ready, _END, stop)
        except BaseException as exc:  # handed to the consumer, which raises it
            _put(ready, exc, stop)


def _put(ready: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put ``item`` unless the consumer has stopped; False when it has."""
    while not stop.is_set():
        try:
            ready.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _record_stream(batch: Any, stream) -> None:
    if torch.is_tensor(batch):
        batch.record_stream(stream)
    elif isinstance(batch, dict):
        for value in batch.values():
            _record_stream(value, stream)
