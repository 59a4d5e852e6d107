"""A run killed with SIGKILL, then started again with the same command, writes the same record as an
uninterrupted run, wherever it was killed: during the feature cache's build, mid-domain, during an
evaluation, while writing the record. Each kill is deterministic: the killed run is the CLI in a
subprocess with one function wrapped to SIGKILL its own process at its N-th call. A write killed
inside ``atomic_path`` leaves no temporary file once the next run starts on that output folder."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmark.cli import main
from benchmark.engine.resume import load_state
from benchmark.engine.run import check_output


@pytest.fixture()
def one_thread():
    """The killed subprocess runs with one thread; so do the in-process runs it is compared with
    (a different thread count changes float summation order)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------- kill points
#: ``python -c KILLER TARGET KIND N run ...``: the CLI with ``TARGET`` (``module:Owner.attr``)
#: wrapped to SIGKILL its own process at the N-th call (KIND ``call``: on entry; ``exit``: a context
#: manager's, once its body has run, i.e. the file is written but not yet in place).
KILLER = """
import contextlib, importlib, os, signal, sys
target, kind, at = sys.argv[1], sys.argv[2], int(sys.argv[3])
module, _, qualname = target.partition(":")
owner = importlib.import_module(module)
*path, name = qualname.split(".")
for part in path:
    owner = getattr(owner, part)
original, calls = getattr(owner, name), [0]
kill = lambda: os.kill(os.getpid(), signal.SIGKILL)
def counted():
    calls[0] += 1
    return calls[0] == at
def on_call(*args, **kwargs):
    if counted():
        kill()
    return original(*args, **kwargs)
@contextlib.contextmanager
def on_exit(*args, **kwargs):
    with original(*args, **kwargs) as value:
        yield value
        if counted():
            kill()
setattr(owner, name, on_call if kind == "call" else on_exit)
from benchmark.cli import main
sys.exit(main(sys.argv[4:]))
"""

#: point -> (target, kind, N) on the tiny stream's polyp and shadow (+ natural), 1 epoch, batch 2:
#: 2 training iterations per domain, 3 domains scored per row.
KILL_POINTS = {
    # the 3rd cache entry's hashing: its arrays are written under .tmp-*, meta.json not yet
    "cache_build": ("benchmark.engine.feature_cache:sha256_file", "call", 3),
    # after the 1st of domain 2's 2 training iterations (the state after domain 1 is on disk)
    "mid_domain": ("methods.template:SAMStrategy._after_training_iteration", "call", 3),
    # row 2 (after domain 2), polyp scored, shadow about to be
    "evaluation": ("benchmark.engine.evaluator:_score_domain", "call", 8),
    # the record's temporary file written, not yet renamed into place
    "record_write": ("benchmark.reporting.records:atomic_path", "exit", 1),
}


@pytest.fixture(scope="module")
def reference_record(tmp_path_factory, tiny_cache):
    """The uninterrupted run the killed ones are compared with (one per module)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the killed runs (see one_thread)
    out = tmp_path_factory.mktemp("kill_reference")
    try:
        assert main(_kill_args(tiny_cache, out)) == 0
    finally:
        torch.set_num_threads(before)
    [path] = out.glob("*.json")
    return json.loads(path.read_text())


def _kill_args(tiny_cache, output, cache=None):
    """finetune_decoder on polyp and shadow, 1 epoch, batch 2 (``tiny_run``'s options)."""
    return ["run", "--stream", "tiny", "--methods", "finetune_decoder", "--checkpoint", "none",
            "--output", str(output), "--set", f"cache_dir={cache or f'{tiny_cache}/features'}",
            "--set", f"stream_overrides.synthetic.cache_dir={tiny_cache}/synthetic",
            "--set", "stream_overrides.domains=[polyp,shadow]", "--set", "hparams.epochs=1",
            "--set", "hparams.batch_size=2", "--no-progress", "--no-report", "--jobs", "1"]


@pytest.mark.parametrize("point", [pytest.param("cache_build"), pytest.param("mid_domain"),
                                   pytest.param("evaluation", marks=pytest.mark.slow),
                                   pytest.param("record_write", marks=pytest.mark.slow)])
def test_sigkill_at_each_point_then_rerun_equals_uninterrupted(point, tmp_path, one_thread, tiny_cache,
                                                               reference_record, comparable, repo_root,
                                                               capsys):
    out = tmp_path / "results"
    # the cache-build kill needs a cache of its own (the shared one is already built)
    cache = tmp_path / "features" if point == "cache_build" else None
    args = _kill_args(tiny_cache, out, cache)
    target, kind, at = KILL_POINTS[point]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", KILLER, target, kind, str(at), *args], cwd=repo_root,
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert not list(out.glob("*.json"))  # no record, whole or half-written, under a record's name
    if point == "cache_build":
        assert list(cache.glob(".tmp-*")), "the kill did not interrupt a cache build"
    if point == "record_write":
        assert list(out.glob(".*.json.*.tmp")), "the kill did not interrupt the record's writing"
    state = load_state(out / ".state" / reference_record["extra"]["run_id"])
    if point == "cache_build":
        assert state is None
    else:  # killed in domain 2 or after it: the state after domain 1 is on disk
        assert state["domain"] == 1 and len(state["rows"]) == 2

    capsys.readouterr()
    assert main(args) == 0  # the same command again
    resumed = "resuming after domain 1/2" in capsys.readouterr().out
    assert resumed == (point != "cache_build")
    [path] = out.glob("*.json")
    assert comparable(json.loads(path.read_text())) == comparable(reference_record)
    assert not (out / ".state").exists()
    assert not list(out.rglob("*.tmp"))  # a killed write's temporary file was removed
    if cache is not None:
        assert not list(cache.glob(".tmp-*"))  # the killed build's leftover was cleaned


#: ``python -c WRITER PATH``: write PATH through atomic_path, print the temporary file's path from
#: inside the block and wait there (to be killed)
WRITER = """
import sys, time
from scenarios.fileio import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_text("half a record")
    print(tmp, flush=True)
    time.sleep(60)
"""


def test_a_write_killed_inside_atomic_path_leaves_no_litter(tmp_path, repo_root):
    out = tmp_path / "results"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(out / name)], cwd=repo_root,
                                stdout=subprocess.PIPE, text=True)
               for name in ("killed.json", ".state/abc/state.pt", "running.json")]
    try:
        temps = [Path(w.stdout.readline().strip()) for w in writers]
        for w in writers[:2]:
            w.send_signal(signal.SIGKILL)
            w.wait()
        assert all(t.is_file() for t in temps)
        check_output(out)  # what a run does before it writes into its output folder
        assert not temps[0].exists() and not temps[1].exists()
        assert temps[2].exists()  # another process writing now: kept
        assert sorted(p.name for p in out.rglob("*") if p.is_file()) == [temps[2].name]
    finally:
        for w in writers:
            w.kill()
            w.wait()
