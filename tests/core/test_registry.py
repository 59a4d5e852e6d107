"""The generic registry (benchmark/core/registry.py): methods found as plugins, clear errors."""
import pytest

from benchmark.core.registry import (METHODS, Declared, Registry, declare_methods, get_method,
                                     list_methods, load_module, method_summary)


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


def test_declared_methods_match_their_classes():
    """What ``list`` reads from the files (name, tap, description) is what importing them gives."""
    names = list_methods()
    declared = {n: method_summary(n) for n in names}
    for name in names:
        cls = get_method(name)  # imports the module: the class replaces its declaration
        assert not isinstance(METHODS.peek(name), Declared) and cls.method_name == name
        assert declared[name] == method_summary(name) and declared[name][0] == cls.tap
        assert declared[name][1], name  # every method is described


def test_a_declaration_its_module_does_not_keep_is_an_error(tmp_path, monkeypatch):
    pkg = tmp_path / "fakemethods"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "liar.py").write_text('''"""Says it registers a method."""
if False:
    @register_method("ghost_method")
    class Ghost:
        tap = "neck"
''')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(METHODS, "_items", dict(METHODS._items))
    declare_methods(["fakemethods"])
    # the scan reads top-level classes only: a class under ``if`` is not declared
    assert "ghost_method" not in METHODS
    (pkg / "liar3.py").write_text('''"""Declares a method, then never registers it."""
def register_method(name):
    return lambda cls: cls

@register_method("ghost_method")
class Ghost:
    tap = "neck"
''')
    declare_methods(["fakemethods"])
    assert method_summary("ghost_method") == ("neck", "Declares a method, then never registers it.")
    with pytest.raises(RuntimeError, match="fakemethods.liar3 declares method 'ghost_method'"):
        get_method("ghost_method")


def test_declaring_a_method_already_imported_keeps_its_class(monkeypatch):
    from methods.baselines.lora import LoRA

    monkeypatch.setattr(METHODS, "_items", {"lora": LoRA})
    declare_methods(["methods.baselines"])
    assert METHODS.peek("lora") is LoRA and isinstance(METHODS.peek("ewc"), Declared)
