"""Resuming checks the saved state's fingerprint (benchmark/engine/resume.py): a run interrupted
after domain 1 and started again with other weights behind the same file name, or with one test
image deleted, refuses with one line naming what differs (it used to resume silently under the
same run id); the same command resumes; ``--no-resume`` starts afresh and removes the stale state."""
import json
import re

import pytest
import torch

from benchmark.cli import main
from benchmark.engine.run import Run


def _weights(path, seed):
    from benchmark.backbones import build_backbone, save_official_checkpoint

    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_official_checkpoint(build_backbone("sam_small", None), path)
    return path


@pytest.fixture
def interrupted(monkeypatch):
    """``interrupted(args)``: run ``args``, stopped (Ctrl-C) when domain 2 starts training: the
    state after domain 1 stays on disk."""
    real = Run.train_domain

    def stop_at_second(self, t):
        if t == 1:
            raise KeyboardInterrupt
        return real(self, t)

    def run(args):
        with monkeypatch.context() as m:
            m.setattr(Run, "train_domain", stop_at_second)
            assert main(args) == 130

    return run


def _refusal(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_other_weights_behind_the_same_file_name_refuse_to_resume(tmp_path, capsys, tiny_run, interrupted):
    a, b = _weights(tmp_path / "a" / "x.pth", 1), _weights(tmp_path / "b" / "x.pth", 2)
    out = tmp_path / "out"
    args = tiny_run("zero_shot", out, domains=["polyp", "shadow"])
    interrupted(args + ["--checkpoint", str(a)])
    [state] = (out / ".state").iterdir()
    capsys.readouterr()
    assert main(args + ["--checkpoint", str(b)]) == 2
    line = _refusal(capsys)
    assert re.fullmatch(rf"error: resume refused: {re.escape(str(state))} was made with weights sha256 "
                        r"[0-9a-f]{8}\.\. \(now [0-9a-f]{8}\.\.\); remove it or use --no-resume", line), line
    assert not list(out.glob("*.json")) and state.is_dir()
    # --no-resume: starts afresh with b, and the stale state of a is gone
    assert main(args + ["--checkpoint", str(b), "--no-resume"]) == 0
    assert not (out / ".state").exists()
    [record] = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert record["extra"]["run_id"] != state.name


def test_a_deleted_test_image_refuses_to_resume_and_the_same_command_resumes(
        tmp_path, capsys, tiny_domain, tiny_cache, interrupted):
    for domain, seed in (("a", 1), ("b", 2)):
        for split in ("train", "test"):
            tiny_domain(tmp_path / domain, split, n=3, seed=seed)
    stream = tmp_path / "folders.yaml"
    stream.write_text(f"name: folders\nimage_size: 256\ndomains: [{{name: a, root: {tmp_path / 'a'}}}, "
                      f"{{name: b, root: {tmp_path / 'b'}}}]\n")
    out = tmp_path / "out"
    args = ["run", "--stream", str(stream), "--methods", "zero_shot", "--checkpoint", "none",
            "--output", str(out), "--set", f"cache_dir={tiny_cache}/features", "--no-progress",
            "--set", "hparams.epochs=1", "--set", "hparams.batch_size=2", "--no-report"]
    interrupted(args)
    [state] = (out / ".state").iterdir()
    for sub in ("images", "masks"):
        (tmp_path / "b" / "test" / sub / "img02.png").rename(tmp_path / f"{sub}-img02.png")
    capsys.readouterr()
    assert main(args) == 2
    line = _refusal(capsys)
    assert line.startswith(f"error: resume refused: {state} was made with data b.files ") and line.endswith(
        "; remove it or use --no-resume"), line
    for sub in ("images", "masks"):  # the image is back: the same command resumes
        (tmp_path / f"{sub}-img02.png").rename(tmp_path / "b" / "test" / sub / "img02.png")
    assert main(args) == 0
    assert "resum" in capsys.readouterr().out.lower()
    [record] = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert record["extra"]["run_id"] == state.name and record["fingerprint"]["data"]["b"]["files"]
