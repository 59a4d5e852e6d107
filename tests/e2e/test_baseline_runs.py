"""The baselines through the CLI on the tiny stream: complete records. The LoRA family (lora, olora,
merge_ta, merge_ties) and ewc, replay, lwf, l2p; their strategy-level tests are in
methods/baselines/."""
import json

import torch

from benchmark.cli import main
from benchmark.reporting.records import load_records

LORA_METHODS = ("lora", "olora", "merge_ta", "merge_ties")
OTHER_METHODS = ("ewc", "replay", "lwf", "l2p")


def test_cli_runs_every_lora_method(tmp_path, tiny_run):
    args = tiny_run(",".join(LORA_METHODS), domains=["polyp", "shadow"], epochs=1, batch_size=None)
    args += ["--set", "stream_overrides.eval_only=[]", "--set", "method_hparams.olora.rank=4"]
    assert main(args) == 0
    records = {json.loads(p.read_text())["method"]: json.loads(p.read_text())
               for p in (tmp_path / "results").glob("*.json")}
    assert sorted(records) == sorted(LORA_METHODS)
    for name, rec in records.items():
        for metric in ("iou", "dice", "mae"):
            matrix = rec["matrices"][metric]
            assert len(matrix) == 3 and all(len(row) == 2 and None not in row for row in matrix)
        assert rec["matrices"]["iou"][0] != rec["matrices"]["iou"][2], name  # it trained
        assert [e["domain"] for e in rec["storage"]["entries"]] == ["polyp", "shadow"]
        assert all(t > 0 for t in rec["storage"]["totals"])
        assert rec["hparams"]["epochs"] == 1 and rec["hparams"]["blocks"] == [7, 8, 9, 10, 11]
        assert len(rec["extra"]["loss_history"]) == 2
    assert records["olora"]["hparams"]["rank"] == 4 and records["lora"]["hparams"]["rank"] == 10
    inc = {n: r["storage"]["increments"] for n, r in records.items()}
    assert inc["lora"][1] == 0 and inc["merge_ta"][1] == 0  # one adapter / one merged delta
    assert inc["olora"][1] == inc["olora"][0] == 5 * 4 * 4 * (192 + 576)  # one rank-4 LoRA per domain
    assert inc["merge_ties"][1] == inc["lora"][0] > 0  # one more kept LoRA per domain
    assert records["merge_ta"]["extra"]["merge_lam"] == [1.0, 0.5]


def test_cli_records_complete(tmp_path, tiny_run):
    out = tmp_path / "results"
    args = tiny_run(",".join(OTHER_METHODS), out, domains=["polyp", "shadow"], epochs=1, batch_size=None)
    assert main(args + ["--set", "method_hparams.replay.buffer_per_domain=2"]) == 0
    records = {r.method: r for r in load_records([out])}
    assert set(records) == set(OTHER_METHODS)
    own_keys = {"ewc": "ewc_lambda", "replay": "buffer_per_domain", "lwf": "lwf_temperature",
                "l2p": "pool_size"}
    for name, rec in records.items():
        n = len(rec.stream["domains"])
        assert rec.stream["trained"] == 2 and n == 3  # polyp, shadow + the eval-only domain
        for score in ("iou", "dice", "mae"):
            assert torch.tensor(rec.matrices[score]).shape == (3, n), (name, score)
        assert own_keys[name] in rec.hparams and rec.hparams["epochs"] == 1
        assert len(rec.storage["entries"]) == 2 and all(t > 0 for t in rec.storage["totals"]), name
        assert len(rec.extra["loss_history"]) == 2, name
    assert records["replay"].hparams["buffer_per_domain"] == 2
    # replay's buffer grows by two images per domain (uint8 3x256x256 + packed mask + prompts)
    inc = records["replay"].storage["increments"]
    assert inc[1] == 2 * (3 * 256 * 256 + 256 * 256 // 8 + 3 * 3 * 4)
    ewc = records["ewc"].storage["entries"]
    assert ewc[1]["components"]["ewc_importances"] == 2 * ewc[0]["components"]["ewc_importances"]
    assert json.loads(next(out.glob("*l2p*.json")).read_text())["method"] == "l2p"
