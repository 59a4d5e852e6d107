"""``--no-progress`` silences every progress bar of a run: the synthetic stream's generation, the
feature cache's build and the run's own bar (tqdm writes to stderr)."""
import re

import pytest

from benchmark.cli import main

TQDM = re.compile(r"\d+%\||it/s|img/s|s/img")  # a tqdm bar's percentage or rate


def _run(tiny_run, tmp_path, capfd, *extra):
    fresh = [  # caches of this test alone, so that the stream and the features are built here
        "--set", f"cache_dir={tmp_path}/features",
        "--set", f"stream_overrides.synthetic.cache_dir={tmp_path}/synthetic",
        "--set", "stream_overrides.synthetic.train_per_domain=1",
        "--set", "stream_overrides.synthetic.test_per_domain=1"]
    args = [a for a in tiny_run("zero_shot", tmp_path / "results", domains=["polyp"])
            if a != "--no-progress"]
    assert main(args + fresh + list(extra)) == 0
    return capfd.readouterr().err


def test_no_progress_leaves_stderr_without_bars(tiny_run, tmp_path, capfd):
    err = _run(tiny_run, tmp_path / "quiet", capfd, "--no-progress")
    assert not TQDM.search(err), err[-2000:]


@pytest.mark.slow
def test_without_the_option_the_bars_show(tiny_run, tmp_path, capfd):
    err = _run(tiny_run, tmp_path / "loud", capfd)
    assert "synthetic stream" in err and "cache" in err and TQDM.search(err), err[-2000:]
