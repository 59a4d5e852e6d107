"""A run killed with SIGKILL mid-domain, then started again with the same command, writes the same
record as an uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from benchmark.cli import main
from benchmark.engine.resume import load_state


@pytest.fixture()
def one_thread():
    """The killed subprocess runs with one thread; so do the in-process runs it is compared with
    (a different thread count changes float summation order)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_sigkill_mid_domain_then_resume_equals_uninterrupted(tmp_path, one_thread, tiny_run, comparable,
                                                              repo_root):
    args = tiny_run("finetune_decoder", tmp_path / "killed")
    # The uninterrupted reference (builds the tiny stream and the feature cache if not yet built).
    assert main(tiny_run("finetune_decoder", tmp_path / "reference")) == 0
    reference = json.loads(next((tmp_path / "reference").glob("*.json")).read_text())

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "run_benchmark.py", *args], cwd=repo_root, env=env,
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
