"""Saved models (benchmark/engine/saved_models.py, benchmark/core/statetree.py): what a run with
``--save-models`` writes after each domain, that its bytes per component are the record's storage,
and one-line errors for damaged folders. Re-evaluation: cli/test_evaluate_from.py."""
import json
import shutil
from pathlib import Path

import pytest
import torch

from benchmark.cli import main
from benchmark.core.statetree import flatten, group_components, nbytes, unflatten
from benchmark.core.storage import sample_bytes
from benchmark.engine.config import RunConfig, load_run_config
from benchmark.engine.saved_models import (component_tensors, enabled, load_model, read_metadata,
                                          read_tensors)
from scenarios.fileio import ConfigError


def records_of(out: Path) -> dict:
    return {r["method"]: r for r in (json.loads(p.read_text()) for p in out.glob("*.json"))}


def folder_of(out: Path, record: dict, row: int) -> Path:
    return out / "models" / record["extra"]["run_id"] / f"domain_{row}"


# ------------------------------------------------------------------------------- state trees
def test_state_tree_round_trip_keeps_key_types_and_containers():
    state = {"parts": {"a.weight": torch.arange(3.0)}, "method": {
        "imp": {0: {"x": torch.ones(2, dtype=torch.int64)}}, "factors": [{"k": (torch.zeros(1), 0.5)}],
        "flag": True, "none": None, "names": ["p", "q"]}}
    tensors, tree = flatten(state)
    assert sorted(tensors) == ["method.factors.0.k.0", "method.imp.0.x", "parts.a.weight"]
    back = unflatten(json.loads(json.dumps(tree)), tensors)
    assert list(back["method"]["imp"]) == [0] and isinstance(back["method"]["factors"][0]["k"], tuple)
    assert back["method"]["flag"] is True and back["method"]["none"] is None
    assert torch.equal(back["parts"]["a.weight"], state["parts"]["a.weight"])
    groups, rest = group_components(tensors, (("parts.*", "p"), ("method.imp.*", "i"), ("x.*", "empty")))
    assert sorted(groups["p"]) == ["parts.a.weight"] and groups["empty"] == {}
    assert sorted(rest) == ["method.factors.0.k.0"] and nbytes(groups["i"]) == 16


def test_state_tree_refuses_objects_and_clashing_names():
    with pytest.raises(TypeError, match="method.m: a Linear cannot be saved"):
        flatten({"method": {"m": torch.nn.Linear(1, 1)}})
    with pytest.raises(ValueError, match="both named 'a.b'"):
        flatten({"a.b": torch.zeros(1), "a": {"b": torch.zeros(1)}})


# ------------------------------------------------------------------------------- the option
def test_save_models_auto_is_on_for_real_backbones_only():
    assert not enabled(RunConfig(backbone="sam_small"))
    assert enabled(RunConfig(backbone="sam_vit_b")) and enabled(RunConfig(backbone="sam2.1_hiera_t"))
    assert enabled(RunConfig(backbone="sam_small", save_models=True))
    assert not enabled(RunConfig(backbone="sam_vit_b", save_models=False))
    with pytest.raises(ConfigError, match="save_models"):
        load_run_config(None, {"save_models": "yes"})


def test_builtin_benchmark_saves_no_models_by_default(tmp_path, tiny_run):
    assert main(tiny_run("zero_shot", domains=["polyp"], epochs=None)) == 0
    assert list((tmp_path / "results").glob("*.json")) and not (tmp_path / "results" / "models").exists()


# ------------------------------------------------------------------------------- saved folders
def test_each_domain_is_saved_with_what_it_is(saved_models_run):
    records = records_of(saved_models_run)
    assert sorted(records) == sorted(("finetune_decoder", "joint", "lora", "replay", "samcl"))
    for method, record in records.items():
        for row, name in ((1, "polyp"), (2, "shadow")):
            folder = folder_of(saved_models_run, record, row)
            assert sorted(p.name for p in folder.iterdir()) == [
                "model.json", "model.safetensors", "state.safetensors", "stream.yaml"]
            meta = read_metadata(folder)
            assert (meta["method"], meta["seed"], meta["backbone"]) == (method, 1234, "sam_small")
            assert meta["run_id"] == record["extra"]["run_id"] and meta["hparams"] == record["hparams"]
            assert meta["domain"] == {"index": row - 1, "name": name, "row": row}
            assert meta["stream"] == record["stream"]
            assert meta["row"] == {m: record["matrices"][m][row] for m in ("iou", "dice", "mae")}
            if "fingerprint" in record:
                assert meta["fingerprint"] == record["fingerprint"]


def test_reading_the_results_folder_skips_the_saved_models(saved_models_run, caplog):
    """The saved models' model.json files lie under the results folder: the report and throughput
    read the records only, with no warning about the manifests."""
    from benchmark.reporting.records import load_records

    assert list((saved_models_run / "models").rglob("model.json"))
    with caplog.at_level("WARNING"):
        records = load_records([saved_models_run])
    assert sorted(r.method for r in records) == sorted(records_of(saved_models_run))
    assert not [r for r in caplog.records if "skipping" in r.getMessage()]


@pytest.mark.parametrize("method", ["lora", "samcl", "replay", "finetune_decoder"])
def test_storage_equals_the_saved_bytes_per_component(saved_models_run, method):
    record = records_of(saved_models_run)[method]
    for row in (1, 2):
        saved = component_tensors(folder_of(saved_models_run, record, row))
        ledger = record["storage"]["entries"][row - 1]["components"]
        assert ledger == {c: nbytes(tensors) for c, tensors in saved.items()}, method
        assert sum(ledger.values()) > 0


@pytest.mark.slow  # the fixture's run of ten methods
def test_baselines_storage_equals_their_saved_bytes(saved_baselines_run):
    """The ten baselines of ``saved_baselines_run`` (merge state, importances, memories and buffers
    of features, packed masks, prompts, logits): every counted component's bytes are in
    model.safetensors (an empty one has none), and nothing they keep is left uncounted in
    state.safetensors (only generator states are)."""
    records = records_of(saved_baselines_run)
    assert len(records) == 10
    for (method, record), row in ((item, row) for item in records.items() for row in (1, 2)):
        folder = folder_of(saved_baselines_run, record, row)
        saved = component_tensors(folder)
        ledger = record["storage"]["entries"][row - 1]["components"]
        assert set(saved) <= set(ledger) and sum(ledger.values()) > 0, method
        assert ledger == {c: nbytes(saved.get(c, {})) for c in ledger}, method
        assert set(read_tensors(folder / "state.safetensors")) <= {"method.generator"}, method


@pytest.mark.slow  # the fixture of the test above
def test_der_saves_its_buffer_as_kept(saved_baselines_run):
    record = records_of(saved_baselines_run)["der"]
    meta, state = load_model(folder_of(saved_baselines_run, record, 2))
    items = state["method"]["items"]  # 8 training items seen, all in the 50-slot reservoir
    assert items["masks"].shape == (8, 256 * 256 // 8) and items["masks"].dtype == torch.uint8
    assert items["prompts"].shape == (8, 3, 3) and items["logits"].shape[0] == 8
    assert state["method"]["mask_shape"] == [256, 256] and meta["components"]["buffer_logits"] > 0


def test_replay_saves_copies_of_its_buffer(saved_models_run):
    record = records_of(saved_models_run)["replay"]
    saved = component_tensors(folder_of(saved_models_run, record, 2))
    images, masks, prompts = (saved[f"buffer_{p}"]["shadow"] for p in ("images", "masks", "prompts"))
    n = len(record["extra"]["buffer_indices"][1])
    assert images.shape == (n, 3, 256, 256) and images.dtype == torch.uint8
    assert masks.shape == (n, 256 * 256 // 8) and masks.dtype == torch.uint8 and masks.any()
    assert prompts.shape == (n, 3, 3) and torch.equal(prompts[..., 2], torch.ones(n, 3))


def test_joint_counts_all_the_data_it_keeps(saved_models_run):
    records = records_of(saved_models_run)
    joint, replay = records["joint"], records["replay"]
    final = joint["storage"]["entries"][-1]["components"]
    items = 2 * 4  # two trained domains of 4 training images each
    assert {k: v for k, v in final.items() if k.startswith("data_")} == sample_bytes("data", items, 256, 3)
    assert joint["storage"]["totals"][-1] >= replay["storage"]["totals"][-1]
    folder = folder_of(saved_models_run, joint, 2)
    meta = read_metadata(folder)  # the data is listed by index, not copied
    assert meta["samples"]["data"]["by_reference"] is True
    assert meta["samples"]["data"]["indices"] == {"polyp": [0, 1, 2, 3], "shadow": [0, 1, 2, 3]}
    assert meta["components"] == final
    assert {c: nbytes(t) for c, t in component_tensors(folder).items()} == {"lora": final["lora"]}


def test_saved_state_is_the_strategy_state(saved_models_run):
    record = records_of(saved_models_run)["samcl"]
    meta, state = load_model(folder_of(saved_models_run, record, 2))
    assert state["method"]["modules"] == ["polyp", "shadow"]
    # bookkeeping, in state.safetensors: the selector's counts of each row it evaluated (row 0 not,
    # when the run took the process's shared row 0)
    rows = {"1", "2"} if record["extra"].get("row0_shared") else {"0", "1", "2"}
    assert set(state["method"]["confusion"]) == rows
    assert state["template"]["domain_index"] == 1 and len(state["template"]["loss_history"]) == 2
    assert any(k.startswith("module_set.aug.shadow.") for k in state["parts"])


# ------------------------------------------------------------------------------- damaged folders
@pytest.fixture
def saved_copy(saved_models_run, tmp_path) -> Path:
    record = records_of(saved_models_run)["lora"]
    return Path(shutil.copytree(folder_of(saved_models_run, record, 1), tmp_path / "saved"))


def test_missing_folder_or_file_is_a_one_line_error(saved_copy, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such saved-model folder"):
        load_model(tmp_path / "nowhere")
    (saved_copy / "state.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="state.safetensors: missing"):
        load_model(saved_copy)
    (saved_copy / "model.json").unlink()
    with pytest.raises(FileNotFoundError, match="not a saved model"):
        load_model(saved_copy)


def test_corrupt_files_are_one_line_errors(saved_copy):
    data = bytearray((saved_copy / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (saved_copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="model.safetensors: its sha256 differs"):
        load_model(saved_copy)
    (saved_copy / "model.json").write_text("{not json")
    with pytest.raises(ValueError, match="model.json: unreadable"):
        load_model(saved_copy)
