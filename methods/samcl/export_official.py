"""Export a saved SAMCL model (``--save-models``) in the layout of the released checkpoints.

    python -m methods.samcl.export_official --from results/models/<run id>/domain_5 --out exported/SAM1

writes ``<domain>.pth`` per AugModule and ``Module_Selector.pth`` (state dicts, no pickled classes:
see :func:`methods.samcl.official.export_released` for how they differ from the released files)
plus ``export.json``. The paper stream's ``CAMO`` and ``COD10K`` get the released names ``camo`` and
``cod``. ``python -m methods.samcl.evaluate_official --released <out>`` reads the folder back.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from methods.samcl.augmodule import AugConfig, AugModule, ModuleSet
from methods.samcl.official import RELEASED_NAMES, export_released
from methods.samcl.selector import ModuleSelector


def module_set_from_saved(folder: str | Path) -> tuple[ModuleSet, ModuleSelector, list[str], dict]:
    """(module set, selector, class names in selector order, metadata) of a saved SAMCL model."""
    from benchmark.engine.saved_models import load_model

    meta, state = load_model(folder)
    extra = meta.get("extra") or {}
    if "aug_config" not in extra or "modules" not in state.get("method", {}):
        raise ValueError(f"{folder}: a saved {meta['method']} model, not a SAMCL one")
    config = AugConfig(**extra["aug_config"])
    parts = state["parts"]
    module_set = ModuleSet(config)
    for name in state["method"]["modules"]:
        prefix = f"module_set.aug.{name}."
        module = AugModule(config)
        module.load_state_dict({k[len(prefix):]: v for k, v in parts.items() if k.startswith(prefix)},
                               strict=True)
        module_set.add(name, module)
    classes = list(extra["selector_classes"])
    selector = ModuleSelector(config.width, len(classes))
    selector.load_state_dict({k[len("selector."):]: v for k, v in parts.items()
                              if k.startswith("selector.")}, strict=True)
    return module_set, selector.eval(), classes, meta


def export_saved(folder: str | Path, out: str | Path) -> Path:
    """Export the saved SAMCL model in ``folder`` into ``out`` (released names for paper domains)."""
    module_set, selector, classes, meta = module_set_from_saved(folder)
    renamed = ModuleSet(module_set.config)
    for name in module_set.names():
        renamed.add(RELEASED_NAMES.get(name, name), module_set[name])
    return export_released(renamed, selector, [RELEASED_NAMES.get(c, c) for c in classes], out,
                           extra={"backbone": meta["backbone"], "method": meta["method"],
                                  "run_id": meta["run_id"], "domain": meta["domain"],
                                  "source": str(folder)})


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Export a saved SAMCL model in the released checkpoints' layout.")
    ap.add_argument("--from", dest="saved", required=True,
                    help="a saved model's folder: <output>/models/<run id>/domain_<t>")
    ap.add_argument("--out", required=True, help="the folder to write <domain>.pth and Module_Selector.pth into")
    args = ap.parse_args(argv)
    try:
        out = export_saved(args.saved, args.out)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"exported to {out}/ (read it back with python -m methods.samcl.evaluate_official --released {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
