"""SAMCL's export in the layout of the released checkpoints (methods/samcl/official.py:
export_released, methods/samcl/export_official.py): state dicts only, read back by the importer
that ``evaluate_official`` uses."""
import json
import zipfile
from pathlib import Path

import pytest
import torch

from methods.samcl.augmodule import AugConfig, ModuleSet, vit_config
from methods.samcl.export_official import main as export_main
from methods.samcl.official import (OFFICIAL_DOMAINS, export_released, load_official_set,
                                    read_export_info)
from methods.samcl.safe_pickle import safe_load
from methods.samcl.selector import ModuleSelector


def same_set(a: ModuleSet, b: ModuleSet) -> bool:
    return a.names() == b.names() and all(
        a[n].state_dict().keys() == b[n].state_dict().keys()
        and all(torch.equal(a[n].state_dict()[k], b[n].state_dict()[k]) for k in a[n].state_dict())
        for n in a.names())


def test_export_of_a_saved_run_reads_back_with_the_importer(saved_models_run, tmp_path):
    from benchmark.engine.saved_models import load_model

    record = next(r for r in (json.loads(p.read_text()) for p in saved_models_run.glob("*.json"))
                  if r["method"] == "samcl")
    saved = saved_models_run / "models" / record["extra"]["run_id"] / "domain_2"
    assert export_main(["--from", str(saved), "--out", str(tmp_path / "SAM")]) == 0
    names = sorted(p.name for p in (tmp_path / "SAM").iterdir())
    assert names == ["Module_Selector.pth", "export.json", "polyp.pth", "shadow.pth"]
    for pth in (tmp_path / "SAM").glob("*.pth"):
        torch.load(pth, weights_only=True)  # plain state dicts: no pickled classes
    module_set, selector, classes = load_official_set(tmp_path / "SAM")  # evaluate_official's importer
    assert classes == ["polyp", "shadow", "natural"] and module_set.names() == ["polyp", "shadow"]
    assert module_set.config == AugConfig(**record["extra"]["aug_config"])
    _, state = load_model(saved)
    for name in module_set.names():
        for key, value in module_set[name].state_dict().items():
            assert torch.equal(value, state["parts"][f"module_set.aug.{name}.{key}"]), (name, key)
    for key, value in selector.state_dict().items():
        assert torch.equal(value, state["parts"][f"selector.{key}"]), key
    assert read_export_info(tmp_path / "SAM")["backbone"] == "sam_small"


def test_export_of_a_lora_model_is_refused(saved_models_run, tmp_path, capsys):
    record = next(r for r in (json.loads(p.read_text()) for p in saved_models_run.glob("*.json"))
                  if r["method"] == "lora")
    saved = saved_models_run / "models" / record["extra"]["run_id"] / "domain_1"
    assert export_main(["--from", str(saved), "--out", str(tmp_path / "x")]) == 2
    assert "not a SAMCL one" in capsys.readouterr().err


def test_released_folder_exports_to_the_same_layout(official_root, tmp_path):
    """Released SAM1 -> our export -> import: the same tensors; each file has the released keys."""
    released, selector, classes = load_official_set(official_root / "SAM1")
    export_released(released, selector, classes, tmp_path)
    again, selector2, classes2 = load_official_set(tmp_path)
    assert classes2 == list(OFFICIAL_DOMAINS) and same_set(released, again)
    assert all(torch.equal(v, selector2.state_dict()[k]) for k, v in selector.state_dict().items())
    theirs = safe_load(official_root / "SAM1" / "Kvasir.pth")
    ours = torch.load(tmp_path / "Kvasir.pth", weights_only=True)
    assert list(ours) == list(theirs) and ours["lora_layer"] == theirs["lora_layer"]
    for key in ours:
        if key != "lora_layer":
            assert sorted(ours[key]) == sorted(theirs[key].state_dict()), key
    with zipfile.ZipFile(tmp_path / "Kvasir.pth") as archive:  # a torch.save zip, like theirs
        assert any(n.endswith("data.pkl") for n in archive.namelist())


def test_export_keeps_a_small_backbones_config(tmp_path):
    cfg = vit_config(width=192, depth=12, neck_dim=128, grid=16, image_size=256, window_map="partition")
    module_set = ModuleSet(cfg)
    for name in ("CAMO", "natural"):
        torch.nn.init.normal_(module_set.add(name).B[0].weight)
    selector = ModuleSelector(192, 3)
    export_released(module_set, selector, ["CAMO", "natural", "COCO"], tmp_path)
    back, _, classes = load_official_set(tmp_path)
    assert classes == ["CAMO", "natural", "COCO"] and back.config == cfg and same_set(module_set, back)
    with pytest.raises(ValueError, match="3 classes, 2 names"):
        export_released(module_set, selector, ["CAMO", "natural"], tmp_path / "bad")
