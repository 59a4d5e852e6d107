"""The generic registry (benchmark/core/registry.py): methods found as plugins, clear errors."""
import pytest

from benchmark.core.registry import Registry, get_method, list_methods, load_module


def test_methods_come_from_the_plugin_entry_point():
    from importlib.metadata import entry_points

    assert [p.value for p in entry_points(group="samcl_bench.plugins")] == ["methods.plugin"]
    names = list_methods()
    assert {"zero_shot", "finetune_decoder", "samcl", "samcl_oracle", "lora", "replay"} <= set(names)
    assert get_method("samcl").method_name == "samcl"


def test_registry_names_duplicates_and_typos():
    reg = Registry("thing")
    reg.register("alpha", int)

    @reg.register("beta")
    class Beta:
        pass

    assert reg.names() == ["alpha", "beta"] and reg.get("beta") is Beta and "alpha" in reg
    reg.register("alpha", int)  # the same object again: fine
    with pytest.raises(ValueError, match="'alpha' is registered twice"):
        reg.register("alpha", str)
    with pytest.raises(KeyError, match="unknown thing 'alpah'.*did you mean alpha"):
        reg.get("alpah")


def test_load_module_of_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.py"):
        load_module(str(tmp_path / "nope.py"))
