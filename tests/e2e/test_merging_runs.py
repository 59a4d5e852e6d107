"""RegCL's merging family (merge_mean, regcl, magmax, dop, replay_merge) through the CLI on the tiny
stream: complete records, storage constant in the number of domains (replay_merge's buffer
aside), on the LoRA and on SAMCL's AugModule. Strategy-level tests:
methods/baselines/test_merging_methods.py; resume: test_resume_methods.py."""
import json

from benchmark.cli import main

MERGING = ("merge_mean", "regcl", "magmax", "dop", "replay_merge")


def records_of(folder):
    return {r["method"]: r for r in (json.loads(p.read_text()) for p in folder.glob("*.json"))}


def check_complete(rec):
    for metric in ("iou", "dice", "mae"):
        matrix = rec["matrices"][metric]
        assert len(matrix) == 3 and all(len(row) == 2 and None not in row for row in matrix)
    assert rec["matrices"]["iou"][0] != rec["matrices"]["iou"][2], rec["method"]  # it trained
    assert rec["extra"]["merged_domains"] == 2


def test_cli_runs_every_merging_method_on_the_lora(tmp_path, tiny_run):
    args = tiny_run(",".join(MERGING), domains=["polyp", "shadow"], epochs=1, batch_size=None)
    args += ["--set", "stream_overrides.eval_only=[]", "--set", "method_hparams.dop.dop_num_steps=20",
             "--set", "method_hparams.replay_merge.buffer_per_domain=2"]
    assert main(args) == 0
    records = records_of(tmp_path / "results")
    assert sorted(records) == sorted(MERGING)
    for name, rec in records.items():
        check_complete(rec)
        assert rec["hparams"]["adapter"] == "lora" and rec["hparams"]["rank"] == 10
        increments = rec["storage"]["increments"]
        if name == "replay_merge":  # two more buffered images per domain, nothing else grows
            assert increments[1] == 2 * (3 * 256 * 256 + 256 * 256 // 8 + 3 * 3 * 4)
        else:
            assert increments[1] == 0, name
    lora = 5 * 10 * (192 + 576) * 4  # rank-10 A and B on qkv of five blocks, fp32
    parts = records["regcl"]["storage"]["entries"][-1]["components"]
    assert parts["merged_adapter"] == parts["kept_last"] == lora
    assert parts["kept_gram_sum"] == 5 * 4 * (192 * 192 + 10 * 10)  # Gram matrices of A's and B's inputs
    assert records["magmax"]["extra"]["magmax_scale"] == 0.5
    assert len(records["replay_merge"]["extra"]["loss_history"]) == 3  # + one refining epoch


def test_cli_merges_samcl_augmodules(tmp_path, tiny_run):
    args = tiny_run("regcl,merge_mean", domains=["polyp", "shadow"], epochs=1, batch_size=None)
    args += ["--set", "stream_overrides.eval_only=[]", "--set", "hparams.adapter=augmodule"]
    assert main(args) == 0
    records = records_of(tmp_path / "results")
    assert sorted(records) == ["merge_mean", "regcl"]
    for rec in records.values():
        check_complete(rec)
        assert rec["hparams"]["adapter"] == "augmodule" and rec["storage"]["increments"][1] == 0
    grams = records["regcl"]["storage"]["entries"][-1]["components"]["kept_gram_sum"]
    assert grams == 4 * (192 * 192 + 5 * 10 * 10)  # the AugModule's A (width 192) and its five B's (rank 10)
