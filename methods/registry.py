"""Name -> method class registry.

A method is one file that defines a ``SAMStrategy`` subclass decorated with
``@register_method("name")``. ``load_builtin_methods()`` imports the built-in
method modules so that their decorators run; it is called lazily because the
strategy template imports Avalanche (slow).
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Dict, List, Type

_REGISTRY: Dict[str, type] = {}

# Packages whose modules are imported to register the built-in methods.
_BUILTIN_PACKAGES = ("methods.baselines", "methods.samcl")


def register_method(name: str) -> Callable[[type], type]:
    """Class decorator: make ``cls`` available as method ``name``."""

    def wrap(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"method name {name!r} is registered twice "
                             f"({_REGISTRY[name].__module__} and {cls.__module__})")
        cls.method_name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def load_builtin_methods() -> None:
    for pkg_name in _BUILTIN_PACKAGES:
        pkg = importlib.import_module(pkg_name)
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{pkg_name}.{info.name}")


def import_method_module(spec: str) -> None:
    """Import a user module (dotted name or path to a .py file) that registers methods."""
    if spec.endswith(".py"):
        import importlib.util
        from pathlib import Path

        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"method file not found: {path}")
        mod_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
    else:
        importlib.import_module(spec)


def get_method(name: str) -> Type:
    load_builtin_methods()
    if name not in _REGISTRY:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def list_methods() -> List[str]:
    load_builtin_methods()
    return sorted(_REGISTRY)
