"""Paired bootstrap: a uniformly better method is significant, an identical one is not, and the
statistic is the AA difference (domains weighted equally whatever their image counts)."""
import numpy as np
import pandas as pd
import pytest

from benchmark.reporting.records import RunRecord, load_records, write_record
from benchmark.reporting.significance import significance_frame

STREAM = {"name": "s", "domains": ["a", "b"], "trained": 2, "eval_only": []}


def _write(folder, method, finals):
    """A record whose final row has the given per-image IoU lists per domain."""
    rows = [{"row": 2, "domain": d, "index": i, "image": f"{d}{i}.png", "iou": v}
            for d, values in finals.items() for i, v in enumerate(values)]
    name = f"{method}.csv"
    (folder / "samples").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "samples" / name, index=False)
    aa = [np.mean(finals["a"]), np.mean(finals["b"])]
    iou = np.array([[0.1, 0.1], [0.5, 0.1], aa])
    write_record(RunRecord(method=method, backbone="sam_small", stream=STREAM, seed=0,
                           matrices={"iou": iou}, extra={"samples_file": f"samples/{name}"}), folder)


def test_better_is_significant_identical_is_not(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.3, 0.7, 30), rng.uniform(0.3, 0.7, 6)  # unequal image counts
    _write(tmp_path, "best", {"a": list(a + 0.1), "b": list(b + 0.1)})
    _write(tmp_path, "worse", {"a": list(a), "b": list(b)})
    _write(tmp_path, "same", {"a": list(a + 0.1), "b": list(b + 0.1)})
    frame = significance_frame(load_records(tmp_path), n_resamples=500).set_index("method")
    best = frame["best"].iloc[0]
    assert best in ("best", "same")
    assert frame.loc["worse", "delta"] == pytest.approx(-10.0)  # the AA difference, in points
    assert frame.loc["worse", "significant"] == "yes"
    assert frame.loc["worse", "ci_high"] < 0
    twin = "same" if best == "best" else "best"
    assert frame.loc[twin, "significant"] == "n.s."


def test_records_without_per_image_files_are_left_out(tmp_path):
    write_record(RunRecord(method="m", backbone="sam_small", stream=STREAM, seed=0,
                           matrices={"iou": np.full((3, 2), 0.5)}), tmp_path)
    assert significance_frame(load_records(tmp_path)).empty
