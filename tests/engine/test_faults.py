"""Faults caught before anything trains, each a one-line error: an output folder that takes no
files, a run id another live process is running (its lock), a bad ``--device``. A stale lock of a
process that died is taken over."""
import fcntl
import os
import subprocess
import sys

import pytest
import torch

from benchmark.cli import build_parser, main
from benchmark.cli.options import run_config
from benchmark.engine.fingerprint import identify
from benchmark.engine.protocol import stream_config
from benchmark.engine.resolve import resolve
from benchmark.engine.resume import lock_holder, lock_path
from benchmark.engine.run import Run


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if any domain is trained."""
    def train_domain(self, t):
        raise AssertionError("a domain was trained")
    monkeypatch.setattr(Run, "train_domain", train_domain)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_an_output_folder_that_takes_no_files_is_refused_before_training(tmp_path, capsys, tiny_run,
                                                                          no_training):
    (tmp_path / "file").write_text("not a folder")
    out = tmp_path / "file" / "results"
    assert main(tiny_run("finetune_decoder", out, domains=["polyp", "shadow"])) == 2
    assert _one_error_line(capsys) == (f"error: output folder {out} is not writable (Not a directory); "
                                       f"choose another --output")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_refused_before_training(tmp_path, capsys, tiny_run, no_training):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    assert main(tiny_run("finetune_decoder", out, domains=["polyp"])) == 2
    assert "is not writable" in _one_error_line(capsys)


def _run_id(args) -> str:
    cfg = run_config(build_parser().parse_args(args))
    stream_cfg = stream_config(cfg)
    hparams = resolve(cfg, stream_cfg, "zero_shot", 1234).hparams
    return identify(cfg, stream_cfg, "zero_shot", 1234, hparams).run_id


def test_a_running_run_id_is_refused_and_a_stale_lock_taken_over(tmp_path, capsys, tiny_run):
    out = tmp_path / "out"
    args = tiny_run("zero_shot", out, domains=["polyp"])
    lock = lock_path(out, _run_id(args))
    lock.parent.mkdir(parents=True)
    with open(lock, "w") as held:  # another process's lock (flock: per open file, so this counts)
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242\n")
        held.flush()
        assert lock_holder(lock) == "4242"
        capsys.readouterr()
        assert main(args) == 2
        assert _one_error_line(capsys) == (f"error: run {lock.stem} is already running: {lock} is held "
                                           f"by pid 4242; wait for it to finish")
    assert not list(out.glob("*.json"))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    lock.write_text(f"{dead}\n")  # left by a process that died: no flock on it
    assert lock_holder(lock) is None
    assert main(args) == 0
    assert len(list(out.glob("*.json"))) == 1 and not lock.exists()


@pytest.mark.parametrize("device,why", [("gpu", "not a device of this machine"),
                                        ("cuda:99", None), ("cuda", "CUDA is not available")])
def test_a_bad_device_is_one_line_listing_the_valid_ones(tmp_path, capsys, tiny_run, device, why):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    why = why or ("not a device of this machine" if torch.cuda.is_available() else "CUDA is not available")
    assert main(tiny_run("zero_shot", tmp_path / "out", domains=["polyp"]) + ["--device", device]) == 2
    cuda = ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    valid = ", ".join(["auto", "cpu"] + cuda)
    assert _one_error_line(capsys) == f"error: device {device!r}: {why}; valid here: {valid}"
