"""Protocols (benchmark/engine/protocol.py): named settings files; the hyper-parameter layer with
source ``protocol <name>``, the stream items, the evaluation settings, the run id; and the stream
option ``train_split``."""
import pytest

from benchmark.cli import main
from benchmark.core.registry import list_methods
from benchmark.engine.config import load_run_config
from benchmark.engine.protocol import (available_protocols, evaluation_settings, load_protocol,
                                       stream_config)
from benchmark.engine.resolve import resolve
from benchmark.engine.fingerprint import identify
from scenarios.config import load_stream_config
from scenarios.fileio import ConfigError


def _hparam_rows(out: str) -> dict:
    """``list --hparams`` output -> {name: (value, source)} (the table rows after the rule)."""
    rows, table = {}, False
    for line in out.splitlines():
        if line.startswith("---"):
            table = True
            continue
        parts = line.split(None, 2)
        if table and len(parts) == 3 and not line.startswith("("):
            rows[parts[0]] = (parts[1], parts[2].strip())
    return rows


def test_the_protocols_and_their_items_each_with_a_reason():
    assert available_protocols() == ["project", "samcl_reference"]
    assert load_protocol("project").hparams == {} and load_protocol("project").stream == {}
    p = load_protocol("samcl_reference")
    assert p.stream == {"mask_reading": "reference"}
    assert "train_split" not in p.stream  # never implied by a protocol
    sections = {method for method, _ in p.hparams}
    assert sections <= set(list_methods()) | {"base"}
    n_items = sum(len(v) for v in p.hparams.values()) + len(p.stream) + sum(
        len(v) for v in p.evaluation.values())
    assert len(p.reasons) == n_items and all(len(r) > 20 for r in p.reasons.values())
    with pytest.raises(ConfigError, match="protocol"):
        load_run_config(None, {"protocol": "no_such_protocol"})


def test_list_hparams_shows_the_protocol_values(capsys):
    source = "protocol samcl_reference"
    assert main(["list", "--hparams", "samcl", "--protocol", "samcl_reference"]) == 0
    rows = _hparam_rows(capsys.readouterr().out)
    assert rows["batch_size"] == ("8", source)
    assert rows["lr_schedule"] == ("'cosine_iteration'", source)
    assert rows["buffer_order"] == ("'shuffled'", source)
    assert rows["general_join"] == ("'after_last'", source)
    # above the synthetic stream's preset (100): the protocol states the reference's 25
    assert rows["selector_epochs"] == ("25", source)
    assert rows["epochs"] == ("3", "default")  # the run's size stays a command-line choice
    assert main(["list", "--hparams", "samcl_oracle", "--protocol", "samcl_reference",
                 "--backbone", "sam2.1_hiera_t"]) == 0
    rows = _hparam_rows(capsys.readouterr().out)
    assert rows["batch_size"] == ("16", source) and rows["general_join"] == ("'after_last'", source)
    assert main(["list", "--hparams", "lora", "--protocol", "samcl_reference"]) == 0
    rows = _hparam_rows(capsys.readouterr().out)  # "base" reaches every method
    assert rows["lr_schedule"] == ("'cosine_iteration'", source) and "buffer_order" not in rows
    # the command line still wins over the protocol
    assert main(["list", "--hparams", "samcl", "--protocol", "samcl_reference",
                 "--set", "hparams.batch_size=4"]) == 0
    assert _hparam_rows(capsys.readouterr().out)["batch_size"] == ("4", "--set")


def test_the_paper_stream_takes_none_of_the_builtin_streams_presets(capsys):
    assert main(["list", "--hparams", "samcl", "--stream", "paper"]) == 0
    rows = _hparam_rows(capsys.readouterr().out)
    assert rows["selector_epochs"] == ("25", "default")
    assert all(src == "default" for _, src in rows.values() if src)


def test_every_method_takes_the_builtin_streams_batch_and_its_own_buffers(capsys):
    """methods/configs/base.yaml reaches every method; a method's own file adds its values."""
    base = ("4", "preset base.yaml [stream:synthetic]")
    for method in ("lora", "samcl", "zero_shot"):
        assert main(["list", "--hparams", method]) == 0
        assert _hparam_rows(capsys.readouterr().out)["batch_size"] == base, method
    assert main(["list", "--hparams", "replay"]) == 0
    rows = _hparam_rows(capsys.readouterr().out)
    assert rows["buffer_per_domain"] == ("5", "preset replay.yaml [stream:synthetic]")
    assert rows["batch_size"] == base
    assert main(["list", "--hparams", "replay", "--stream", "paper"]) == 0
    rows = _hparam_rows(capsys.readouterr().out)
    assert rows["batch_size"] == ("8", "default") and rows["buffer_per_domain"] == ("10", "default")


def test_the_protocol_enters_the_fingerprint_and_the_run_id(tiny_cache):
    def identity(protocol):
        cfg = load_run_config(None, {"protocol": protocol, "stream": "tiny", "checkpoint": None,
                                     "cache_dir": f"{tiny_cache}/features",
                                     "stream_overrides.synthetic.cache_dir": f"{tiny_cache}/synthetic"})
        stream_cfg = stream_config(cfg)
        return identify(cfg, stream_cfg, "zero_shot", 1234, resolve(cfg, stream_cfg, "zero_shot", 1234).hparams)

    project, reference = identity("project"), identity("samcl_reference")
    assert project.fingerprint["protocol"] == "project"
    assert reference.fingerprint["protocol"] == "samcl_reference" and reference.run_id != project.run_id
    assert load_run_config(None, {"protocol": "samcl_reference"}).to_dict()["protocol"] == "samcl_reference"


def test_stream_items_sit_below_the_run_configs_stream_overrides():
    ref = load_run_config(None, {"protocol": "samcl_reference", "stream": "tiny"})
    assert stream_config(ref).mask_reading == "reference"
    assert stream_config(load_run_config(None, {"stream": "tiny"})).mask_reading == "threshold"
    explicit = load_run_config(None, {"protocol": "samcl_reference", "stream": "tiny",
                                      "stream_overrides.mask_reading": "threshold"})
    assert stream_config(explicit).mask_reading == "threshold"


def test_evaluation_settings_per_backbone_family():
    ref, proj = load_protocol("samcl_reference"), load_protocol("project")
    assert evaluation_settings(ref, "sam_vit_b") == {"upscale": "nearest", "iou_loss": "reference"}
    assert evaluation_settings(ref, "sam_small") == {"upscale": "nearest", "iou_loss": "reference"}
    assert evaluation_settings(ref, "sam2.1_hiera_t") == {"upscale": "bilinear", "iou_loss": "reference"}
    assert evaluation_settings(proj, "sam_vit_b") == {"upscale": "bilinear", "iou_loss": "project"}


def test_a_protocol_cannot_set_train_split(tmp_path, monkeypatch):
    from benchmark.engine import protocol

    (tmp_path / "bad.yaml").write_text(
        "stream:\n  train_split: {value: test, reason: the reference trains on test images}\n")
    (tmp_path / "noreason.yaml").write_text("hparams:\n  samcl:\n    buffer_order: shuffled\n")
    monkeypatch.setattr(protocol, "PROTOCOLS_DIR", tmp_path)
    protocol.load_protocol.cache_clear()
    try:
        with pytest.raises(ConfigError, match="train_split"):
            protocol.load_protocol("bad")
        with pytest.raises(ConfigError, match="reason"):
            protocol.load_protocol("noreason")
    finally:
        protocol.load_protocol.cache_clear()


def test_train_split_test_trains_every_domain_on_its_test_split(tmp_path, tiny_domain):
    from scenarios.stream import build_domain_stream

    for name in ("a", "b"):
        tiny_domain(tmp_path / name, split="train", n=4, seed=1)
        tiny_domain(tmp_path / name, split="test", n=2, seed=2)
    (tmp_path / "s.yaml").write_text(
        f"name: s\nimage_size: 64\ndomains:\n  - {{name: a, root: {tmp_path / 'a'}}}\n"
        f"  - {{name: b, root: {tmp_path / 'b'}}}\n")
    own = build_domain_stream(load_stream_config(tmp_path / "s.yaml"), progress=False)
    assert [len(ds) for ds in own.train_datasets] == [4, 4]
    cfg = load_stream_config(tmp_path / "s.yaml", {"train_split": "test"})
    assert cfg.to_dict()["train_split"] == "test"
    on_test = build_domain_stream(cfg, progress=False)
    assert [len(ds) for ds in on_test.train_datasets] == [2, 2]
    for train, test in zip(on_test.train_datasets, on_test.test_datasets):
        assert train.files() == test.files()
