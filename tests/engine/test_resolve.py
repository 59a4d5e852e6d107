"""What a run is (benchmark/engine/resolve.py): hyper-parameters layered default < preset < hparams <
method_hparams, each with its source; the tap. The run id: test_fingerprint.py."""
import pytest

from benchmark.engine.config import load_run_config
from benchmark.engine.resolve import resolve
from scenarios.config import load_stream_config


def _resolve(method, stream="synthetic", seed=1234, **overrides):
    cfg = load_run_config(None, overrides)
    return resolve(cfg, load_stream_config(stream), method, seed)


def test_samcl_presets_apply_on_the_synthetic_stream_only():
    on_synthetic = _resolve("samcl")
    assert on_synthetic.hparams["selector_epochs"] == 100
    assert on_synthetic.sources["selector_epochs"].startswith("preset")
    assert _resolve("samcl_oracle").hparams["selector_epochs"] == 100  # inherited from samcl
    on_tiny = _resolve("samcl", stream="tiny")
    assert on_tiny.hparams["selector_epochs"] == 25 and on_tiny.sources["selector_epochs"] == "default"
    assert on_tiny.tap == "block6" and on_tiny.cls.method_name == "samcl"


def test_layers_and_sources():
    r = _resolve("finetune_decoder", **{"hparams.epochs": 2, "hparams.rank": 4,
                                          "method_hparams.finetune_decoder.epochs": 5})
    assert r.hparams["lr"] == 3e-4 and r.sources["lr"] == "default"
    assert r.hparams["epochs"] == 5 and r.sources["epochs"] == "--set"  # the method's own wins
    assert "rank" not in r.hparams  # a common hyper-parameter the method lacks is not applied
    assert r.tap == "neck"


def test_bad_hyper_parameters_are_errors_naming_method_and_key():
    with pytest.raises(ValueError, match="'finetune_decoder'.*bogus"):
        _resolve("finetune_decoder", **{"method_hparams.finetune_decoder.bogus": 1})
    with pytest.raises(KeyError, match="did you mean samcl"):
        _resolve("samcll")
