"""Settings are never ignored silently: typos, unknown methods, numbers YAML 1.1 reads as strings,
duplicate keys, duplicate methods and out-of-range values are one-line errors naming the key."""
import pytest

from benchmark.cli import main
from benchmark.engine.config import load_run_config
from scenarios.fileio import ConfigError, parse_value, read_yaml_mapping


def run_list(capsys, *sets):
    args = ["list", "--hparams", "finetune_decoder"]
    for s in sets:
        args += ["--set", s]
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err.strip()


@pytest.mark.parametrize("setting, message", [
    ("hparams.epoch=1", "hparams.epoch: no method of this run has a hyper-parameter 'epoch' (did you mean epochs?)"),
    ("method_hparams.nosuchmethod.lr=0.1", "method_hparams.nosuchmethod: unknown method"),
    ("hparams.epochs=1.5", "hyper-parameter 'epochs' expects an integer, got 1.5"),
    ("hparams.epochs=-1", "hyper-parameter 'epochs' must be an integer >= 0, got -1"),
    ("method_hparams.finetune_decoder.lr=.nan", "hyper-parameter 'lr' must be a finite number > 0"),
    ("methods=[lora,lora]", "field 'methods' names 'lora' more than once"),
])
def test_bad_settings_are_one_line_errors(capsys, setting, message):
    code, _, err = run_list(capsys, setting)
    assert code == 2 and "\n" not in err and message in err


def test_scientific_notation_is_a_number(capsys):
    assert parse_value("3e-4") == pytest.approx(3e-4) and parse_value("1e5") == 100000.0
    code, out, _ = run_list(capsys, "method_hparams.finetune_decoder.lr=3e-4")  # the README's example
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("lr "))
    assert row.split()[1:] == ["0.0003", "--set"]


def test_yaml_files_read_numbers_and_refuse_duplicate_keys(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("hparams: {lr: 3e-4}\n")
    assert read_yaml_mapping(good)["hparams"]["lr"] == pytest.approx(3e-4)
    dup = tmp_path / "dup.yaml"
    dup.write_text("seeds: [1]\nmethods: [lora]\nseeds: [2]\n")
    with pytest.raises(ConfigError, match=r"dup.yaml: not valid YAML \(duplicate key 'seeds'"):
        load_run_config(str(dup))


def test_zero_epochs_is_allowed_and_means_no_training(capsys):
    code, out, _ = run_list(capsys, "hparams.epochs=0")
    assert code == 0 and any(line.split()[:2] == ["epochs", "0"] for line in out.splitlines())
