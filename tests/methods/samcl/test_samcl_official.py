"""Import of the released SAMCL checkpoints without running pickled code; our safe format."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

from methods.samcl.augmodule import ModuleSet, count_parameters, hiera_t_config
from methods.samcl.official import (OFFICIAL_DOMAINS, load_module_set, load_official_module,
                                    load_official_set, save_module_set)
from methods.samcl.safe_pickle import CheckpointFormatError, UnsafeCheckpointError, safe_load
from methods.samcl.selector import FeatureBuffer, ModuleSelector

@pytest.mark.parametrize("folder,width,blocks,count", [("SAM1", 768, (7, 8, 9, 10, 11), 61_304),
                                                       ("SAM2", 384, (6, 7, 8, 9), 20_856)])
def test_every_released_module_imports(official_root, folder, width, blocks, count):
    files = sorted((official_root / folder).glob("*.pth"))
    modules = [f for f in files if f.stem != "Module_Selector"]
    assert len(modules) == 5
    for f in modules:
        raw = safe_load(f)
        m = load_official_module(f)
        assert m.config.width == width and m.config.blocks == blocks
        assert count_parameters(m) == count
        # every released tensor lands in the module, unchanged
        released = sum(v.numel() for k, v in raw.items() if k not in ("lora_layer",) for v in v.state_dict().values())
        assert released == count_parameters(m, include_layernorm=True)
        torch.testing.assert_close(m.A.weight, raw["A"].state_dict()["weight"], atol=0, rtol=0)
        torch.testing.assert_close(m.B[-1].bias, raw[f"B_{len(blocks) - 1:03d}"].state_dict()["bias"], atol=0, rtol=0)
        assert m.B[0].weight.abs().sum() > 0  # trained, not zero-init


@pytest.mark.parametrize("folder,dim", [("SAM1", 768), ("SAM2", 384)])
def test_released_set_and_selector(official_root, folder, dim):
    ms, selector, classes = load_official_set(official_root / folder)
    assert classes == list(OFFICIAL_DOMAINS)
    assert ms.names() == ["Kvasir", "camo", "ISTD", "ISIC", "cod"]  # COCO has no module: vanilla
    assert selector.in_dim == dim and selector.n_classes == 6 and not selector.training


def _evil_checkpoint(path: Path, marker: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"A": Evil()}, path)


def test_malicious_pickle_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.pth"
    _evil_checkpoint(ckpt, marker)
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pth: refused global (posix|os|nt)\.system"):
        safe_load(ckpt)
    with pytest.raises(UnsafeCheckpointError):
        load_official_module(ckpt)
    assert not marker.exists()


def test_unknown_module_class_refused(tmp_path):
    torch.save({"m": torch.nn.Conv2d(1, 1, 1)}, tmp_path / "conv.pth")
    with pytest.raises(UnsafeCheckpointError, match="torch.nn.modules.conv.Conv2d"):
        safe_load(tmp_path / "conv.pth")


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        safe_load(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a zip")
    with pytest.raises(CheckpointFormatError, match="junk.pth"):
        safe_load(tmp_path / "junk.pth")
    torch.save({"x": torch.ones(2)}, tmp_path / "plain.pth")
    assert torch.equal(safe_load(tmp_path / "plain.pth")["x"], torch.ones(2))
    with pytest.raises(CheckpointFormatError, match="not a SAMCL AugModule"):
        load_official_module(tmp_path / "plain.pth")


def test_no_unsafe_torch_load_in_samcl(repo_root):
    for f in (repo_root / "methods" / "samcl").glob("*.py"):
        assert not re.search(r"weights_only\s*=\s*False", f.read_text()), f


def test_save_load_roundtrip(tmp_path):
    cfg = hiera_t_config(window_map="partition")
    ms = ModuleSet(cfg)
    for name in ("a", "b"):
        m = ms.add(name)
        with torch.no_grad():
            for p in m.parameters():
                p.normal_()
    selector = ModuleSelector(384, 3)
    buffer = FeatureBuffer(5)
    buffer.add("a", torch.randn(7, 384))
    buffer.add("general", torch.randn(2, 384))
    path = save_module_set(ms, selector, buffer, tmp_path / "set", extra={"backbone": "sam2.1_hiera_t"})
    assert path.suffix == ".json" and (tmp_path / "set.safetensors").is_file()
    ms2, sel2, buf2, meta = load_module_set(tmp_path / "set.json")
    assert meta["backbone"] == "sam2.1_hiera_t" and ms2.config == cfg and ms2.names() == ["a", "b"]
    for name in ("a", "b"):
        for (k, v), v2 in zip(ms[name].state_dict().items(), ms2[name].state_dict().values()):
            assert torch.equal(v, v2), k
    for v, v2 in zip(selector.state_dict().values(), sel2.state_dict().values()):
        assert torch.equal(v, v2)
    assert buf2.vectors["a"].shape == (5, 384) and torch.equal(buf2.vectors["general"], buffer.vectors["general"])
    with pytest.raises(FileNotFoundError):
        load_module_set(tmp_path / "nothing")
