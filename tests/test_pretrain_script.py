"""The pretraining script's command line: defaults come from PretrainConfig, bad values stop it early."""
import pytest

from benchmark.pretrain import PretrainConfig
from script_loader import load_script


def test_defaults_are_the_config_defaults():
    args = load_script("pretrain_small_sam").parse_args([])
    d = PretrainConfig()
    fields = ("steps", "batch_size", "targets_per_image", "prompts_per_target", "point_prob", "focal_alpha", "lr")
    assert {f: getattr(args, f) for f in fields} == {f: getattr(d, f) for f in fields}


@pytest.mark.parametrize("argv, field", [(["--point-prob", "1.5"], "--point-prob"),
                                         (["--focal-alpha", "0"], "--focal-alpha"),
                                         (["--steps", "0"], "--steps"),
                                         (["--prompts-per-target", "0"], "--prompts-per-target")])
def test_bad_values_name_the_option(argv, field, capsys):
    with pytest.raises(SystemExit):
        load_script("pretrain_small_sam").parse_args(argv)
    assert field in capsys.readouterr().err
