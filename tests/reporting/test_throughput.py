"""benchmark/reporting/throughput.py and the ``throughput`` command: images per second from the image
counts and seconds in run records."""
import json
import math

from benchmark.cli import main
from benchmark.reporting.throughput import render, rows_of


def test_images_per_second_from_a_record(tmp_path, capsys, tiny_run):
    out = tmp_path / "out"
    assert main(tiny_run("finetune_decoder", out, domains=["polyp", "shadow"])) == 0
    record = json.loads(next(out.glob("*.json")).read_text())
    timing = record["timing"]
    assert timing["train_images"] == [4 * 2, 4 * 2]  # 4 training images x 2 epochs per domain
    assert timing["eval_images"] == 2 * 3  # 2 test images x (2 domains + evaluation-only natural)

    (row,) = rows_of([str(out)])
    assert math.isclose(row["train img/s"], 16 / sum(timing["train"]))
    assert math.isclose(row["eval img/s"], 6 * 3 / sum(timing["eval"]))  # 3 rows: zero-shot + 2
    assert row["precision"] == "fp32" and row["world"] == 1 and row["workers"] == 0
    assert row["attention"] == "official"  # auto on sam_small's 16x16 tokens
    assert (row["cache"], row["compile"], row["prefetch"]) == ("float32", False, 0)
    assert "| finetune_decoder" in render([row], markdown=True)
    capsys.readouterr()
    assert main(["throughput", str(out), "--markdown"]) == 0
    assert "| finetune_decoder" in capsys.readouterr().out
    assert main(["throughput", str(out)]) == 0
    assert "finetune_decoder" in capsys.readouterr().out and "|" not in render([row])

    shared = json.loads(json.dumps(record))  # row 0 taken from another run: 2 rows evaluated
    shared["extra"]["row0_shared"], shared["timing"]["eval"][0] = True, 0.0
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "r.json").write_text(json.dumps(shared))
    (shared_row,) = rows_of([str(tmp_path / "shared")])
    assert math.isclose(shared_row["eval img/s"], 6 * 2 / sum(timing["eval"][1:]))

    compiled = json.loads(json.dumps(record))  # compile=true: its compile seconds left out
    compiled["config"]["compile"] = True
    compiled["timing"]["compile"] = {"train": timing["train_total"] / 2, "eval": sum(timing["eval"]) / 4,
                                     "compilations": 5}
    (tmp_path / "compiled").mkdir()
    (tmp_path / "compiled" / "r.json").write_text(json.dumps(compiled))
    (compiled_row,) = rows_of([str(tmp_path / "compiled")])
    assert math.isclose(compiled_row["train img/s"], 2 * row["train img/s"])
    assert math.isclose(compiled_row["eval img/s"], row["eval img/s"] * 4 / 3)
    assert compiled_row["compile"] and math.isclose(
        compiled_row["compile s"], timing["train_total"] / 2 + sum(timing["eval"]) / 4)
    assert math.isclose(row["paper min"], (7070 * 20 / row["train img/s"] + 3495 * 6 / row["eval img/s"]) / 60)

    del record["timing"]["train_images"]  # a record from before the counts existed
    (out / "old.json").write_text(json.dumps(record))
    assert rows_of([str(out / "old.json")]) == []
    assert "no image counts" in capsys.readouterr().err
    assert main(["throughput", str(tmp_path / "missing")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["throughput", str(tmp_path / "empty")]) == 2
    assert capsys.readouterr().err.count("error:") == 2
