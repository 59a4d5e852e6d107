"""RegCL's merging family on the built-in benchmark (default stream, pretrained sam_small, seed 1234):
every merged method's storage stays constant over the five domains (its Gram-matrix sums
included), and each ends with every score filled. Slow: four runs of the default stream."""
import json

import pytest

from benchmark.cli import main

MERGED = ("regcl", "merge_mean", "magmax", "dop")


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("merging_sanity")
    assert main(["run", "--methods", ",".join(MERGED), "--output", str(tmp / "results"),
                 "--seeds", "1234", "--set", f"cache_dir={tmp}/features",
                 "--set", f"stream_overrides.synthetic.cache_dir={tmp}/synthetic",
                 "--no-progress", "--no-report"]) == 0
    return {r["method"]: r for r in (json.loads(p.read_text()) for p in (tmp / "results").glob("*.json"))}


@pytest.mark.slow
@pytest.mark.parametrize("method", MERGED)
def test_merged_storage_is_constant_in_the_number_of_domains(records, method):
    storage = records[method]["storage"]
    assert len(storage["entries"]) == 5
    assert storage["increments"][1:] == [0, 0, 0, 0], storage["increments"]
    first, last = (e["components"] for e in (storage["entries"][0], storage["entries"][-1]))
    assert first == last


@pytest.mark.slow
@pytest.mark.parametrize("method", MERGED)
def test_merged_methods_fill_every_score(records, method):
    iou = records[method]["matrices"]["iou"]
    assert len(iou) == 6 and all(v is not None for row in iou for v in row)
