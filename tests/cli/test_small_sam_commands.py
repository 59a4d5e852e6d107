"""The small SAM's commands (``pretrain-small-sam``, ``eval-small-sam``) through ``benchmark.cli.main``:
defaults come from PretrainConfig, bad values stop them early with a one-line error naming the option,
and a one-step run writes weights that ``eval-small-sam`` scores."""
import pytest

from benchmark.backbones.small_sam.pretrain import PretrainConfig
from benchmark.cli import build_parser, main


def test_defaults_are_the_config_defaults():
    args = build_parser().parse_args(["pretrain-small-sam"])
    d = PretrainConfig()
    fields = ("steps", "batch_size", "targets_per_image", "prompts_per_target", "point_prob", "focal_alpha", "lr")
    assert {f: getattr(args, f) for f in fields} == {f: getattr(d, f) for f in fields}
    assert args.out.as_posix() == "checkpoint/sam_small_synthetic.safetensors"


@pytest.mark.parametrize("argv, field", [(["--point-prob", "1.5"], "--point-prob"),
                                         (["--focal-alpha", "0"], "--focal-alpha"),
                                         (["--steps", "0"], "--steps"),
                                         (["--prompts-per-target", "0"], "--prompts-per-target")])
def test_bad_values_name_the_option(argv, field, capsys, tmp_path):
    assert main(["pretrain-small-sam", *argv, "--out", str(tmp_path / "w.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and field in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())  # stopped before training


@pytest.mark.parametrize("argv", [["--n", "0"], ["--points", "0"], ["--domain-n", "-1"]])
def test_eval_bad_values_are_one_line_errors(argv, capsys):
    assert main(["eval-small-sam", *argv]) == 2
    assert capsys.readouterr().err.startswith("error: --n and --points must be positive")


def test_eval_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["eval-small-sam", "--checkpoint", str(tmp_path / "none.safetensors")]) == 2
    assert "small SAM checkpoint not found" in capsys.readouterr().err


def test_one_step_pretraining_is_scored_by_eval(tmp_path, capsys):
    out = tmp_path / "sam_small.safetensors"
    assert main(["pretrain-small-sam", "--steps", "1", "--batch-size", "1", "--targets-per-image", "1",
                 "--warmup", "1", "--workers", "0", "--eval-n", "1", "--out", str(out),
                 "--log", str(tmp_path / "log.jsonl")]) == 0
    printed = capsys.readouterr().out
    assert "trained 1/1 steps" in printed and "held-out generic mIoU (3 points, n=1)" in printed
    assert out.is_file() and (tmp_path / "sam_small.safetensors.state.pt").is_file()
    assert (tmp_path / "log.jsonl").read_text().count("\n") == 1
    assert main(["eval-small-sam", "--checkpoint", str(out), "--n", "1", "--domain-n", "1",
                 "--points", "2"]) == 0
    printed = capsys.readouterr().out
    assert "held-out generic mIoU (2 points, n=1)" in printed and "polyp" in printed
