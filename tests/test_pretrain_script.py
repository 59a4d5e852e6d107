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
    assert (args.steps, args.batch_size, args.targets_per_image, args.point_prob, args.focal_alpha) == \
        (d.steps, d.batch_size, d.targets_per_image, d.point_prob, d.focal_alpha)


@pytest.mark.parametrize("argv, field", [(["--point-prob", "1.5"], "--point-prob"),
                                         (["--focal-alpha", "0"], "--focal-alpha"),
                                         (["--steps", "0"], "--steps")])
def test_bad_values_name_the_option(argv, field, capsys):
    with pytest.raises(SystemExit):
        load_script().parse_args(argv)
    assert field in capsys.readouterr().err
