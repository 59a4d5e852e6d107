"""The command line: --help is light, bad inputs are one-line errors, list and list --hparams."""
import subprocess
import sys

from benchmark.cli import main


def test_help_is_light(repo_root):
    """--help must not import torch or Avalanche (it answers at once)."""
    code = ("import sys; from benchmark.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules and 'avalanche' not in sys.modules, 'heavy import'\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "report" in out.stdout and "points" in out.stdout


def test_list_is_light(repo_root):
    """``list`` reads the methods' declarations: no torch, no Avalanche (it answers in < 1 s)."""
    code = ("import sys; from benchmark.cli import main\n"
            "assert main(['list']) == 0\n"
            "assert 'torch' not in sys.modules and 'avalanche' not in sys.modules, 'heavy import'\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "samcl_oracle       tap=block6" in out.stdout and "sam2.1_hiera_t" in out.stdout


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    assert main(["run", "--methods", "no_such_method", "--checkpoint", "none",
                 "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "no_such_method" in err and "\n" not in err
    assert main(["run", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.json"))  # nothing half-written


def test_list_shows_methods_and_backbones(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "finetune_decoder" in out and "sam_vit_b" in out and "synthetic" in out
    methods = out.split("methods:\n")[1].split("backbones:")[0].splitlines()
    assert len(methods) >= 13 and all(len(line.split(None, 2)) == 3 for line in methods)  # described


def test_bad_scale_out_fields_are_one_line_errors(tmp_path, capsys, tiny_run):
    for bad in ("precision=fp16", "channels_last=maybe", "resume=2", "num_workers=-1", "attention=flash",
                "cache_dtype=int8"):
        assert main(tiny_run("zero_shot", tmp_path / "out") + ["--set", bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and bad.split("=")[0] in err


def _hparam_rows(out: str) -> dict:
    """``list --hparams`` output -> {name: (value, source)} (after the title and table header)."""
    rows = [line.split(None, 2) for line in out.splitlines()[3:] if line.strip()]
    return {name: (value, source) for name, value, source in rows}


def test_list_hparams_shows_values_and_their_sources(capsys):
    """samcl's selector_epochs comes from its preset on the synthetic stream; on the tiny stream it
    keeps the class default (the preset is keyed stream:synthetic); --set wins over both."""
    assert main(["list", "--hparams", "samcl"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("samcl on stream 'synthetic' with backbone 'sam_small'")
    rows = _hparam_rows(out)
    assert rows["selector_epochs"] == ("100", "preset samcl.yaml [stream:synthetic]")
    assert rows["epochs"][1] == "default" and rows["(tap)"][0] == "block6"
    assert main(["list", "--hparams", "samcl_oracle"]) == 0  # inherits samcl's presets
    assert _hparam_rows(capsys.readouterr().out)["selector_epochs"][0] == "100"
    assert main(["list", "--hparams", "samcl", "--stream", "tiny"]) == 0
    assert _hparam_rows(capsys.readouterr().out)["selector_epochs"] == ("25", "default")
    assert main(["list", "--hparams", "finetune_decoder",
                 "--set", "method_hparams.finetune_decoder.epochs=3"]) == 0
    rows = _hparam_rows(capsys.readouterr().out)
    assert rows["lr"] == ("0.0003", "default") and rows["epochs"] == ("3", "--set")
    assert main(["list", "--hparams", "no_such_method"]) == 2
    assert "no_such_method" in capsys.readouterr().err
