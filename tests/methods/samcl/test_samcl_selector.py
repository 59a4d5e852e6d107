"""Module Selector, feature buffer and selector training."""
from __future__ import annotations

import pytest
import torch

from methods.samcl.selector import (FeatureBuffer, ModuleSelector, SelectorTraining, confusion_matrix,
                                    pooled_tap, train_selector)


def test_selector_shape_and_params():
    sel = ModuleSelector(768, 6)
    assert sel(torch.randn(4, 768)).shape == (4, 6)
    n = sum(p.numel() for p in sel.parameters())
    assert 0.7e6 < n < 0.8e6  # "about 0.78 M" in the paper
    with pytest.raises(ValueError):
        ModuleSelector(10, 2)


def test_pooled_tap():
    tokens = torch.arange(2 * 2 * 3 * 4, dtype=torch.float32).view(2, 2, 3, 4)
    torch.testing.assert_close(pooled_tap(tokens), tokens.reshape(2, 6, 4).mean(1))
    with pytest.raises(ValueError):
        pooled_tap(torch.zeros(2, 4))


def test_buffer_keeps_first_vectors():
    buf = FeatureBuffer(capacity=5)
    a = torch.randn(3, 8)
    b = torch.randn(4, 8)
    assert buf.add("x", a) == 3 and buf.add("x", b) == 2 and buf.add("x", b) == 0
    assert buf.full("x") and torch.equal(buf.vectors["x"], torch.cat([a, b[:2]]))
    assert buf.nbytes() == {"x": 5 * 8 * 4}
    with pytest.raises(KeyError, match="no selector class"):
        buf.dataset({"y": 0})


def _clusters(n_domains, n, d, seed):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_domains, d, generator=g) * 2
    return [centers[i] + torch.randn(n, d, generator=g) for i in range(n_domains)]


def test_selector_learns_continually_and_is_seeded():
    data = _clusters(3, 40, 16, seed=0)
    buf = FeatureBuffer(30)
    class_of = {"a": 0, "b": 1, "general": 2}
    torch.manual_seed(0)
    sel = ModuleSelector(16, 3)
    buf.add("general", data[2])  # evaluation-only domain: in the buffer from the start
    for name, vecs in (("a", data[0]), ("b", data[1])):
        buf.add(name, vecs)
        losses = train_selector(sel, buf, class_of, SelectorTraining(epochs=10, batch_size=8, seed=1))
        assert len(losses) == 10 and losses[-1] < losses[0]
    x = torch.cat([d[30:] for d in data])
    y = torch.arange(3).repeat_interleave(10)
    pred = sel.predict(x)
    cm = confusion_matrix(y, pred, 3)
    assert cm.sum() == 30 and cm.trace() >= 27
    torch.manual_seed(0)
    sel2 = ModuleSelector(16, 3)
    train_selector(sel2, buf, class_of, SelectorTraining(epochs=10, batch_size=8, seed=1))
    train_selector(sel2, buf, class_of, SelectorTraining(epochs=10, batch_size=8, seed=1))
    torch.manual_seed(0)
    sel3 = ModuleSelector(16, 3)
    train_selector(sel3, buf, class_of, SelectorTraining(epochs=10, batch_size=8, seed=1))
    train_selector(sel3, buf, class_of, SelectorTraining(epochs=10, batch_size=8, seed=1))
    for v2, v3 in zip(sel2.state_dict().values(), sel3.state_dict().values()):
        assert torch.equal(v2, v3)
