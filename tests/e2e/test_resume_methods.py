"""Every registered method resumes exactly: a run that crashes in its second domain and is started
again with the same command writes the same record as an uninterrupted run."""
import json
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.core.registry import list_methods
from methods.template import SAMStrategy


@pytest.fixture
def run_args(tiny_run):
    """Two domains of the tiny stream, one epoch, each method's own batch size."""
    def args(method: str, output: Path) -> list:
        return tiny_run(method, output, domains=["polyp", "shadow"], epochs=1, batch_size=None)
    return args


def comparable_file(path: Path) -> dict:
    record = json.loads(path.read_text())
    extra = {k: v for k, v in record["extra"].items() if "time" not in k}
    return {"matrices": record["matrices"], "storage": record["storage"], "hparams": record["hparams"],
            "extra": extra}


@pytest.mark.parametrize("method", list_methods())
def test_crashed_run_resumes_to_the_same_record(method, tmp_path, monkeypatch, run_args):
    work = tmp_path / method
    work.mkdir()
    assert main(run_args(method, work / "straight")) == 0
    original = SAMStrategy.learn_domain

    def crash_in_second_domain(self, experience, domain_index, **kwargs):
        if domain_index == 1:
            raise RuntimeError("simulated crash")
        return original(self, experience, domain_index, **kwargs)

    monkeypatch.setattr(SAMStrategy, "learn_domain", crash_in_second_domain)
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(run_args(method, work / "resumed"))
    assert list((work / "resumed" / ".state").iterdir()), "no state saved at the domain boundary"
    monkeypatch.setattr(SAMStrategy, "learn_domain", original)
    assert main(run_args(method, work / "resumed")) == 0
    [straight] = (work / "straight").glob("*.json")
    [resumed] = (work / "resumed").glob("*.json")
    assert comparable_file(resumed) == comparable_file(straight)
