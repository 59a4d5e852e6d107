"""Resumable runs: state files, run ids, and a run killed with SIGKILL mid-domain then resumed."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.cli import main
from benchmark.resume import (clear_state, compute_run_id, load_state, rng_state, save_state,
                              set_rng_state, state_dir)

REPO = Path(__file__).resolve().parents[1]


def tiny_run_args(tmp: Path, methods: str, output: Path, domains: str = "[polyp,shadow,lesion]") -> list:
    return ["run", "--methods", methods, "--checkpoint", "none", "--output", str(output),
            "--set", f"cache_dir={tmp}/features",
            "--set", f"stream_overrides.synthetic.cache_dir={tmp}/synthetic",
            "--set", "stream_overrides.synthetic.train_per_domain=4",
            "--set", "stream_overrides.synthetic.test_per_domain=2",
            "--set", f"stream_overrides.domains={domains}",
            "--set", "hparams.epochs=2", "--set", "hparams.batch_size=2", "--no-progress",
            "--no-report"]


def comparable(record: dict) -> dict:
    """A record without what legitimately differs between runs (times, dates, paths)."""
    return {"matrices": record["matrices"], "storage": record["storage"],
            "hparams": record["hparams"], "seed": record["seed"], "stream": record["stream"],
            "loss_history": record["extra"]["loss_history"], "run_id": record["extra"]["run_id"]}


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


def test_run_id_is_stable_and_ignores_paths():
    kw = dict(method="m", backbone="sam_small", checkpoint="auto", seed=1, hparams={"lr": 1e-3})
    a = compute_run_id(stream={"name": "s", "domains": [{"name": "a", "root": "/x"}],
                               "source": "/a.yaml"}, **kw)
    b = compute_run_id(stream={"name": "s", "domains": [{"name": "a", "root": "/elsewhere"}],
                               "source": "/b.yaml"}, **kw)
    assert a == b and len(a) == 16
    assert a != compute_run_id(stream={"name": "s", "domains": [{"name": "b"}]}, **kw)
    assert a != compute_run_id(stream={"name": "s", "domains": [{"name": "a"}]},
                               **{**kw, "seed": 2})


def test_clear_state_removes_the_folder(tmp_path):
    folder = state_dir(tmp_path, "abc")
    save_state(folder, {"x": torch.zeros(2)})
    clear_state(folder)
    assert not (tmp_path / ".state").exists()


@pytest.fixture()
def one_thread():
    """The killed subprocess runs with one thread; so do the in-process runs it is compared with
    (a different thread count changes float summation order)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_sigkill_mid_domain_then_resume_equals_uninterrupted(tmp_path, one_thread):
    args = tiny_run_args(tmp_path, "finetune_decoder", tmp_path / "killed")
    # The uninterrupted reference (also builds the synthetic stream and the feature cache).
    assert main(tiny_run_args(tmp_path, "finetune_decoder", tmp_path / "reference")) == 0
    reference = json.loads(next((tmp_path / "reference").glob("*.json")).read_text())

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "run_benchmark.py", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state_file = tmp_path / "killed" / ".state" / reference["extra"]["run_id"] / "state.pt"
    deadline = time.time() + 600
    while not state_file.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert state_file.exists(), proc.stderr.read().decode()[-2000:] if proc.poll() else "timeout"
    os.kill(proc.pid, signal.SIGKILL)  # training domain 2 (state of domain 1 is on disk)
    proc.wait()
    proc.stderr.close()
    assert not list((tmp_path / "killed").glob("*.json"))
    state = load_state(state_file.parent)
    assert state["domain"] == 1 and len(state["rows"]) == 2

    assert main(args) == 0  # the same command again: resumes after domain 1
    resumed = json.loads(next((tmp_path / "killed").glob("*.json")).read_text())
    assert not (tmp_path / "killed" / ".state").exists()  # removed once the record is written
    assert comparable(resumed) == comparable(reference)
