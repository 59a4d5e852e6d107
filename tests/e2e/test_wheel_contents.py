"""``pip install .`` (not editable) ships every data file the code reads: the wheel holds each
non-Python file of the three packages (configs, protocols, streams, splits, presets, templates)."""
import subprocess
import sys
import zipfile

PACKAGES = ("benchmark", "methods", "scenarios")


def _data_files(repo_root):
    tracked = subprocess.run(["git", "ls-files", *PACKAGES], cwd=repo_root, capture_output=True,
                             text=True, check=True).stdout.split()
    return sorted(f for f in tracked if not f.endswith(".py"))


def test_the_wheel_holds_every_package_data_file(repo_root, tmp_path):
    data = _data_files(repo_root)
    assert "benchmark/configs/default.yaml" in data and "scenarios/streams/tiny.yaml" in data
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(tmp_path), str(repo_root)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("samcl_bench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert [f for f in data if f not in names] == []
    entry_points = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "samcl-bench = benchmark.cli:main" in entry_points
    assert "methods = methods.plugin" in entry_points
