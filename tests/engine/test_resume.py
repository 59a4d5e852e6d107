"""Resume state (benchmark/engine/resume.py): state files and RNG state (run ids:
test_fingerprint.py; refusals: test_resume_refusal.py; the lock: test_faults.py). A run killed
mid-domain and resumed: e2e/test_resume_runs.py; every method: e2e/test_resume_methods.py."""
import random

import numpy as np
import pytest
import torch

from benchmark.engine.resume import (clear_state, load_state, rng_state, save_state, set_rng_state,
                                     state_dir)


def test_rng_state_round_trip(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_state(tmp_path, {"rng": rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    state = load_state(tmp_path)  # weights_only=True: only tensors and plain containers
    set_rng_state(state["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write left no temporary file


def test_unreadable_state_is_a_clear_error(tmp_path):
    (tmp_path / "state.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="state.pt"):
        load_state(tmp_path)
    assert load_state(tmp_path / "missing") is None


def test_clear_state_removes_the_folder(tmp_path):
    folder = state_dir(tmp_path, "abc")
    save_state(folder, {"x": torch.zeros(2)})
    clear_state(folder)
    assert not (tmp_path / ".state").exists()
