"""Every registered method resumes exactly: a run that crashes in its second domain and is started
again with the same command writes the same record as an uninterrupted run."""
import json
from pathlib import Path

import pytest

from benchmark.cli import main
from methods.registry import list_methods
from methods.template import SAMStrategy


def run_args(tmp: Path, method: str, output: Path) -> list:
    return ["run", "--methods", method, "--checkpoint", "none", "--output", str(output),
            "--set", f"cache_dir={tmp.parent}/features",
            "--set", f"stream_overrides.synthetic.cache_dir={tmp.parent}/synthetic",
            "--set", "stream_overrides.synthetic.train_per_domain=3",
            "--set", "stream_overrides.synthetic.test_per_domain=2",
            "--set", "stream_overrides.domains=[polyp,shadow]",
            "--set", "hparams.epochs=1", "--set", "hparams.batch_size=2",
            "--no-progress", "--no-report"]


def comparable(path: Path) -> dict:
    record = json.loads(path.read_text())
    extra = {k: v for k, v in record["extra"].items() if "time" not in k}
    return {"matrices": record["matrices"], "storage": record["storage"], "hparams": record["hparams"],
            "extra": extra}


@pytest.mark.parametrize("method", list_methods())
def test_crashed_run_resumes_to_the_same_record(method, tmp_path, monkeypatch):
    work = tmp_path / method
    work.mkdir()
    assert main(run_args(work, method, work / "straight")) == 0
    original = SAMStrategy.learn_domain

    def crash_in_second_domain(self, experience, domain_index, **kwargs):
        if domain_index == 1:
            raise RuntimeError("simulated crash")
        return original(self, experience, domain_index, **kwargs)

    monkeypatch.setattr(SAMStrategy, "learn_domain", crash_in_second_domain)
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(run_args(work, method, work / "resumed"))
    assert list((work / "resumed" / ".state").iterdir()), "no state saved at the domain boundary"
    monkeypatch.setattr(SAMStrategy, "learn_domain", original)
    assert main(run_args(work, method, work / "resumed")) == 0
    [straight] = (work / "straight").glob("*.json")
    [resumed] = (work / "resumed").glob("*.json")
    assert comparable(resumed) == comparable(straight)
