"""Domain orders as an axis (scenarios/config.py): explicit ``orders`` in a stream YAML (validated)
and ``order_choices``: the stream overrides of each order a run makes."""
from pathlib import Path

import pytest

from scenarios.config import load_stream_config, order_choices
from scenarios.fileio import ConfigError

TINY = Path(__file__).resolve().parents[2] / "scenarios" / "streams" / "tiny.yaml"


def tiny_with(tmp_path: Path, extra: str) -> Path:
    text = TINY.read_text().replace("order_seed: null\n", "")
    path = tmp_path / "ordered.yaml"
    path.write_text(text + extra)
    return path


def names(cfg) -> list:
    return [d.name for d in cfg.ordered_domains()]


def test_explicit_orders_are_runs_of_the_stream_in_that_order(tmp_path):
    path = tiny_with(tmp_path, "orders:\n  - [lesion, polyp, shadow]\n  - [polyp, shadow, lesion]\n")
    cfg = load_stream_config(path)
    choices = order_choices(cfg)
    assert len(choices) == 2
    first = load_stream_config(path, choices[0])
    assert names(first) == ["lesion", "polyp", "shadow"] and first.orders == []
    assert names(load_stream_config(path, choices[1])) == ["polyp", "shadow", "lesion"]
    # a run of an explicit order is the run of the stream written in that order (same identity)
    same = load_stream_config(path, choices[1]).to_dict()
    assert same == dict(load_stream_config("tiny").to_dict(), source=same["source"])
    assert "orders" not in load_stream_config("tiny").to_dict()   # run ids of other streams unchanged
    with pytest.raises(ConfigError, match=r"ordered.yaml: the stream lists its orders.*--orders 2"):
        order_choices(cfg, 2)


@pytest.mark.parametrize("orders, message", [
    ("[[polyp, shadow, lesion], [polyp, shadow, coco]]", r"orders\[1\]: 'coco' is not a trained domain \(trained: polyp, shadow, lesion\)"),
    ("[[polyp, polyp, lesion]]", r"orders\[0\]: domain 'polyp' appears twice"),
    ("[[polyp, shadow]]", r"orders\[0\]: misses lesion"),
    ("[[polyp, shadow, natural]]", r"orders\[0\]: 'natural' is not a trained domain"),
    ("[[lesion, shadow, polyp], [lesion, shadow, polyp]]", r"orders\[1\]: repeats orders\[0\]"),
    ("[polyp, shadow, lesion]", r"orders\[0\]: expected a list, got str"),
])
def test_bad_orders_are_one_line_errors(tmp_path, orders, message):
    path = tiny_with(tmp_path, f"orders: {orders}\n")
    with pytest.raises(ConfigError, match=message) as err:
        load_stream_config(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_orders_and_order_seed_conflict(tmp_path):
    path = tiny_with(tmp_path, "orders: [[lesion, shadow, polyp]]\n")
    with pytest.raises(ConfigError, match="orders and order_seed: give one"):
        load_stream_config(path, {"order_seed": 3})


def test_n_seeded_orders_start_with_the_streams_own():
    cfg = load_stream_config("tiny")
    assert order_choices(cfg) == [{}]
    choices = order_choices(cfg, 6)                 # every order of three domains
    assert choices[0] == {} and all(set(c) == {"order_seed"} for c in choices[1:])
    orders = [names(load_stream_config("tiny", c)) for c in choices]
    assert orders[0] == ["polyp", "shadow", "lesion"] and len({tuple(o) for o in orders}) == 6
    assert order_choices(cfg, 3) == choices[:3]     # deterministic: a prefix of a longer list
    with pytest.raises(ConfigError, match="--orders 7: 3 trained domains have only 6 orders"):
        order_choices(cfg, 7)
    with pytest.raises(ConfigError, match="orders must be a positive integer"):
        order_choices(cfg, 0)
