"""A run over folders written by ``prepare`` records each domain's manifest fingerprint."""
import json

import yaml

from benchmark.cli import main


def test_records_carry_the_manifest_fingerprint(tmp_path, tiny_domain, tiny_cache):
    for name in ("a", "b"):
        for split in ("train", "test"):
            tiny_domain(tmp_path / name, split, n=2, size=64, seed=len(split))
    (tmp_path / "a" / "manifest.json").write_text(json.dumps({"fingerprint": "f00d" * 16}))
    stream = tmp_path / "two.yaml"
    stream.write_text(yaml.safe_dump({"name": "two", "image_size": 256, "domains": [
        {"name": "a", "root": str(tmp_path / "a")}, {"name": "b", "root": str(tmp_path / "b")}]}))
    out = tmp_path / "records"
    assert main(["run", "--stream", str(stream), "--methods", "zero_shot", "--checkpoint", "none",
                 "--output", str(out), "--set", f"cache_dir={tiny_cache}/features",
                 "--no-progress", "--no-report"]) == 0
    (record,) = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert record["extra"]["data_manifests"] == {"a": "f00d" * 16}  # b has no manifest
