"""Loading ahead (scenarios/prefetch.py): the loader's batches in its order, on the device, the
loader's errors raised in the consumer, a stopped consumer stops the thread; only loaders whose
order does not draw from the global generators are prefetched."""
import threading

import pytest
import torch
from torch.utils.data import DataLoader

from scenarios.prefetch import Prefetcher, prefetchable
from scenarios.stream import collate_samples


def _items(n: int = 7) -> list:
    return [{"features": {"tokens": torch.full((2, 3), float(i), dtype=torch.bfloat16)},
             "mask": torch.full((4,), i, dtype=torch.uint8), "index": i, "name": f"im{i}"}
            for i in range(n)]


def _loader(**kwargs) -> DataLoader:
    return DataLoader(_items(), batch_size=3, collate_fn=collate_samples, **kwargs)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("depth", [1, 3])
def test_same_batches_in_the_same_order_on_the_device(depth, device):
    """On CUDA the copies run on a side stream: the consumer's stream must wait for them."""
    loader = _loader(shuffle=True, generator=torch.Generator().manual_seed(3), pin_memory=device == "cuda")
    expected = list(_loader(shuffle=True, generator=torch.Generator().manual_seed(3)))
    got = []
    for batch in Prefetcher(loader, device, depth):
        assert batch["features"]["tokens"].device.type == device
        batch["features"]["tokens"] = (batch["features"]["tokens"] * 1).cpu()  # used on this stream
        batch["mask"], batch["index"] = batch["mask"].cpu(), batch["index"].cpu()
        got.append(batch)
    assert len(Prefetcher(loader, device, depth)) == len(loader) == 3
    assert [b["name"] for b in got] == [b["name"] for b in expected]
    for a, b in zip(got, expected):
        assert a["features"]["tokens"].dtype == torch.float32  # to_device widened the cached dtype
        assert torch.equal(a["features"]["tokens"], b["features"]["tokens"].float())
        assert torch.equal(a["mask"], b["mask"]) and torch.equal(a["index"], b["index"])
    assert len(list(Prefetcher(loader, device, depth))) == 3  # iterable again (a new epoch)


def test_a_loading_error_is_raised_in_the_consumer():
    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            if i == 2:
                raise OSError("image 2 unreadable")
            return {"x": torch.zeros(1)}

    seen = []
    with pytest.raises(OSError, match="image 2 unreadable"):
        for batch in Prefetcher(DataLoader(Broken(), batch_size=1, collate_fn=collate_samples), "cpu", 2):
            seen.append(batch)
    assert len(seen) == 2


def test_a_consumer_that_stops_early_stops_the_thread():
    before = {t.ident for t in threading.enumerate()}
    batches = iter(Prefetcher(_loader(), "cpu", 1))
    next(batches)
    batches.close()  # what a `break` out of the training loop does
    assert not [t for t in threading.enumerate() if t.name == "prefetch" and t.ident not in before]


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match="prefetch depth must be >= 1, got 0"):
        Prefetcher(_loader(), "cpu", 0)


def test_which_loaders_are_prefetchable():
    assert prefetchable(_loader())  # in order
    assert prefetchable(_loader(shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert not prefetchable(_loader(shuffle=True))  # its shuffle draws a seed from torch's generator
    assert not prefetchable(list(_loader()))  # not a DataLoader (e.g. Avalanche's replay loader)
