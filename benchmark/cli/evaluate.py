"""``evaluate --from SAVED``: score every domain with a saved model (``<output>/models/<run id>/
domain_<t>/``, written by runs with ``--save-models``) and compare with the R row its run scored."""
from __future__ import annotations

import json

HELP = "re-evaluate a saved model (--from <output>/models/<run id>/domain_<t>) on every domain"


def add_arguments(p) -> None:
    p.add_argument("--from", dest="saved", required=True, metavar="SAVED",
                   help="a saved model's folder: <output>/models/<run id>/domain_<t>")
    p.add_argument("--data-root", help="read folder domains from DATA_ROOT/<their folder name> "
                                       "(a synthetic stream: from or into DATA_ROOT)")
    p.add_argument("--cache-dir", help="the feature cache (default: the run's)")
    p.add_argument("--checkpoint", help="the backbone's weights on this machine (default: the run's)")
    p.add_argument("--device", help="auto, cpu, cuda, ... (default: the run's)")
    p.add_argument("--json", metavar="FILE", help="also write the row and the comparison as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _table(names, row, saved) -> str:
    from tabulate import tabulate

    lines = [[name] + [f"{row[m][i]:.6f}" for m in row] + ["yes" if all(
        repr(float(row[m][i])) == repr(float(saved[m][i])) for m in row) else "NO"]
        for i, name in enumerate(names)]
    return tabulate(lines, headers=["domain", *row, "= saved row"])


def main(args) -> int:
    from benchmark.engine.evaluate_saved import evaluate_saved
    from scenarios.fileio import atomic_write_text

    out = evaluate_saved(args.saved, data_root=args.data_root, cache_dir=args.cache_dir,
                         checkpoint=args.checkpoint, device=args.device,
                         progress=False if args.no_progress else None)
    meta = out["meta"]
    print(f"{meta['method']} seed {meta['seed']} on {meta['backbone']}, after domain "
          f"{meta['domain']['row']} ({meta['domain']['name']}) of stream {meta['stream']['name']} "
          f"(run {meta['run_id']})")
    print(_table(meta["stream"]["domains"], out["row"], out["saved_row"]))
    if out["run_id"] != out["saved_run_id"]:
        print(f"note: this configuration's run id is {out['run_id']}, the saved model's "
              f"{out['saved_run_id']}")
    print("reproduces the saved R row exactly" if out["equal"] else
          "differs from the saved R row (another machine, thread count or code version?)")
    if args.json:
        atomic_write_text(args.json, json.dumps({k: out[k] for k in ("row", "saved_row", "equal",
                                                                      "run_id", "saved_run_id")},
                                                indent=1))
    return 0
