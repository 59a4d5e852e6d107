"""``run_benchmark.py evaluate --from SAVED`` (benchmark/cli/evaluate.py, engine/evaluate_saved.py):
a saved model re-scores every domain exactly as its run did. The saved folders: engine/test_saved_models.py."""
import json
import shutil
from pathlib import Path

import pytest

from benchmark.cli import main


def record_of(out: Path, method: str) -> dict:
    return next(r for r in (json.loads(p.read_text()) for p in out.glob("*.json")) if r["method"] == method)


def evaluate(args: list, tmp_path: Path) -> dict:
    result = tmp_path / "row.json"
    assert main(["evaluate", *args, "--json", str(result), "--no-progress"]) == 0
    return json.loads(result.read_text())


@pytest.mark.parametrize("method", ["lora", "samcl", "finetune_decoder"])
def test_evaluate_from_reproduces_each_rows_exactly(saved_models_run, tmp_path, method, capsys):
    record = record_of(saved_models_run, method)
    run_id = record["extra"]["run_id"]
    for row in (1, 2):
        out = evaluate(["--from", str(saved_models_run / "models" / run_id / f"domain_{row}")], tmp_path)
        assert out["row"] == {m: record["matrices"][m][row] for m in ("iou", "dice", "mae")}, (method, row)
        assert out["equal"] is True and out["run_id"] == out["saved_run_id"] == run_id
    assert "reproduces the saved R row exactly" in capsys.readouterr().out


def test_evaluate_from_another_data_root(saved_models_run, tiny_cache, tmp_path):
    """The synthetic stream read from (here: the same) data root given on the command line."""
    record = record_of(saved_models_run, "lora")
    folder = saved_models_run / "models" / record["extra"]["run_id"] / "domain_2"
    out = evaluate(["--from", str(folder), "--data-root", str(tiny_cache / "synthetic"),
                    "--cache-dir", str(tiny_cache / "features")], tmp_path)
    assert out["row"] == {m: record["matrices"][m][2] for m in ("iou", "dice", "mae")}


def test_missing_or_corrupt_saved_model_is_a_one_line_error(saved_models_run, tmp_path, capsys):
    assert main(["evaluate", "--from", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nowhere: no such saved-model folder" in err
    record = record_of(saved_models_run, "samcl")
    copy = Path(shutil.copytree(saved_models_run / "models" / record["extra"]["run_id"] / "domain_1",
                                tmp_path / "copy"))
    (copy / "model.safetensors").write_bytes(b"\0" * 16)
    assert main(["evaluate", "--from", str(copy)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "model.safetensors: its sha256 differs" in err
