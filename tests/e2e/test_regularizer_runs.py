"""si, mas, gem, agem and der through the CLI: complete records on the tiny stream, and (slow) the
issue-16 sanity check on the built-in benchmark: each forgets less than sequential lora. Their
strategy-level tests are in methods/baselines/test_regularizers.py."""
import numpy as np
import pytest
import torch

from benchmark.cli import main
from benchmark.core.registry import get_method
from benchmark.reporting.metrics import fm_samcl
from benchmark.reporting.records import load_records

METHODS = ("si", "mas", "gem", "agem", "der")
OWN = {"si": "si_lambda", "mas": "mas_lambda", "gem": "gem_patterns", "agem": "agem_sample_size",
       "der": "der_buffer_size"}
#: what each adds to the storage ledger beyond the adapter
STORED = {"si": "si_importances", "mas": "mas_importances", "gem": "memory_inputs",
          "agem": "memory_inputs", "der": "buffer_logits"}


def test_cli_records_complete(tmp_path, tiny_run):
    out = tmp_path / "results"
    assert main(tiny_run(",".join(METHODS), out, domains=["polyp", "shadow"], epochs=1, batch_size=None)
                + ["--set", "method_hparams.gem.gem_patterns=2",
                   "--set", "method_hparams.si.batch_size=2"]) == 0  # si: 2 steps, a penalty
    records = {r.method: r for r in load_records([out])}
    assert set(records) == set(METHODS)
    for name, rec in records.items():
        shape = (3, len(rec.stream["domains"]))  # zero-shot + 2 trained rows, 2 + eval-only columns
        assert all(torch.tensor(rec.matrices[s]).shape == shape for s in ("iou", "dice", "mae")), name
        assert rec.matrices["iou"][0] != rec.matrices["iou"][2], name  # it trained
        assert OWN[name] in rec.hparams and rec.hparams["epochs"] == 1
        assert rec.storage["entries"][-1]["components"][STORED[name]] > 0, name
        assert len(rec.extra["loss_history"]) == 2, name
    gem = records["gem"].storage["entries"]
    # gem's memory grows by two cached block-6 feature maps (16 x 16 x 192 float32) per domain
    assert gem[0]["components"]["memory_inputs"] == 2 * 16 * 16 * 192 * 4
    assert records["gem"].hparams["gem_patterns"] == 2
    assert records["si"].extra["si_weighted_penalty_mean"][1] > 0


@pytest.mark.slow
def test_regularizers_forget_less_than_lora(tmp_path):
    """The built-in benchmark at the README's seed: FM (SAMCL) of every regulariser and of DER++,
    each at its default strength, is below sequential lora's."""
    assert main(["run", "--methods", "lora," + ",".join(METHODS), "--output", str(tmp_path / "r"),
                 "--seeds", "1234", "--set", f"cache_dir={tmp_path}/features",
                 "--set", f"stream_overrides.synthetic.cache_dir={tmp_path}/synthetic",
                 "--no-progress", "--no-report"]) == 0
    records = {r.method: r for r in load_records([tmp_path / "r"])}
    fm = {m: fm_samcl(np.array(r.matrices["iou"], dtype=float), r.stream["trained"])
          for m, r in records.items()}
    assert all(fm[m] < fm["lora"] for m in METHODS), fm
    strength = {"si": "si_lambda", "mas": "mas_lambda", "gem": "gem_strength", "der": "der_alpha"}
    for name, key in strength.items():  # each at its own default strength (no preset changes it)
        assert records[name].hparams[key] == get_method(name).declared_defaults()[key], name
