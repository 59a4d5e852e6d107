"""Run configs (benchmark/engine/config.py): the default file, dotted overrides, clear errors."""
import pytest

from benchmark.engine.config import load_run_config
from scenarios.fileio import ConfigError


def test_default_config_loads_and_overrides_apply():
    cfg = load_run_config(None, {"seeds": [1, 2], "hparams.epochs": 3, "methods": "a,b"})
    assert cfg.seeds == [1, 2]
    assert cfg.hparams == {"epochs": 3}
    assert cfg.methods == ["a", "b"]
    assert cfg.backbone == "sam_small"


def test_unknown_field_names_file_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("stream: synthetic\nbogus: 1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*'bogus'"):
        load_run_config(str(path))


def test_bad_seeds_is_a_clear_error():
    with pytest.raises(ConfigError, match="seeds"):
        load_run_config(None, {"seeds": ["x"]})


def test_overrides_given_on_the_command_line_are_marked():
    cfg = load_run_config(None, {"method_hparams.lora.rank": 4})
    assert cfg.origin("method_hparams.lora.rank") == "--set"
    assert cfg.origin("hparams.epochs") == "run config default.yaml"


def test_stream_overrides_from_the_command_line_merge_into_the_stream(tmp_path):
    """``--set stream_overrides.synthetic.cache_dir=X`` changes that one key of the stream's
    synthetic section; the stream file's other keys (the tiny stream's image counts) stay."""
    from scenarios.config import load_stream_config

    cfg = load_run_config(None, {"stream": "tiny", "stream_overrides.synthetic.cache_dir": str(tmp_path),
                                 "stream_overrides.domains": ["polyp"]})
    stream = load_stream_config(cfg.stream, cfg.stream_overrides)
    assert stream.synthetic.cache_dir == str(tmp_path) and [d.name for d in stream.domains] == ["polyp"]
    assert (stream.synthetic.train_per_domain, stream.synthetic.test_per_domain) == (4, 2)
