"""The pretraining script's command line: defaults come from PretrainConfig, bad values stop it early."""
import importlib.util
from pathlib import Path

import pytest

from benchmark.pretrain import PretrainConfig

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "pretrain_small_sam.py"


def load_script():
    spec = importlib.util.spec_from_file_location("pretrain_small_sam", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_defaults_are_the_config_defaults():
    args = load_script().parse_args([])
    d = PretrainConfig()
    fields = ("steps", "batch_size", "targets_per_image", "prompts_per_target", "point_prob", "focal_alpha", "lr")
    assert {f: getattr(args, f) for f in fields} == {f: getattr(d, f) for f in fields}


@pytest.mark.parametrize("argv, field", [(["--point-prob", "1.5"], "--point-prob"),
                                         (["--focal-alpha", "0"], "--focal-alpha"),
                                         (["--steps", "0"], "--steps"),
                                         (["--prompts-per-target", "0"], "--prompts-per-target")])
def test_bad_values_name_the_option(argv, field, capsys):
    with pytest.raises(SystemExit):
        load_script().parse_args(argv)
    assert field in capsys.readouterr().err
