"""scripts/device_check.sh on a CPU: the sample copy and stream file are made, BUDGET skips the
steps it has no time for (each says so), and the sample copy is removed at the end."""
import os
import subprocess
import sys


def test_a_spent_budget_skips_the_steps_and_cleans_up(tmp_path, repo_root, tiny_domain):
    for domain in ("Kvasir", "ISIC"):
        tiny_domain(tmp_path / "samples" / domain, n=1, size=16)
    out = tmp_path / "out"
    env = dict(os.environ, PY=sys.executable, DEVICE="cpu", REPEAT="2", BUDGET="1",
               STEPS="env vit_b tests")
    proc = subprocess.run(["bash", "scripts/device_check.sh", str(out), str(tmp_path / "samples")],
                          cwd=repo_root, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    skipped = [line for line in proc.stdout.splitlines() if "skipped, the budget of 1 s" in line]
    assert [line.split(":")[0] for line in skipped] == \
        ["== env", "== vit_b_old", "== vit_b_new", "== vit_b_throughput", "== tests"]
    assert "== 0 step(s) failed, 5 skipped" in proc.stdout
    assert "name: samples" in (out / "samples_stream.yaml").read_text()
    assert not (out / "samples").exists()


def test_missing_samples_are_a_one_line_error(tmp_path, repo_root):
    env = dict(os.environ, PY=sys.executable, DEVICE="cpu")
    proc = subprocess.run(["bash", "scripts/device_check.sh", str(tmp_path / "out"), str(tmp_path)],
                          cwd=repo_root, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 98
    assert proc.stdout.strip() == f"error: {tmp_path}/Kvasir/test/images not found"
