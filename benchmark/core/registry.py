"""The generic registry of named things: methods (``METHODS``, filled by plugins) and backbones
(``benchmark.backbones.registry.BACKBONES``).

A :class:`Registry` maps names to objects (classes, infos, paths, callables). The harness never
imports the methods package: methods register themselves (``@register_method("name")``) when their
package is loaded as a *plugin*. Plugins are the modules named under the entry-point group
``samcl_bench.plugins`` in an installed distribution's metadata (this project names
``methods.plugin``; another package can add its own methods the same way), plus any module or
``.py`` file given with ``--method-file`` / ``method_modules``. They are imported on the first
lookup, not at start-up (the methods import Avalanche, which takes seconds).
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
from importlib import metadata
from pathlib import Path
from typing import Callable, Dict, Generic, List, Optional, TypeVar

T = TypeVar("T")
PLUGIN_GROUP = "samcl_bench.plugins"
_plugins_loaded = False


class Registry(Generic[T]):
    """Names -> objects of one kind. ``lazy``: load the plugins before the first lookup."""

    def __init__(self, kind: str, lazy: bool = False):
        self.kind = kind
        self.lazy = lazy
        self._items: Dict[str, T] = {}

    def register(self, name: str, obj: Optional[T] = None):
        """``register(name, obj)``, or ``@register(name)`` as a decorator. A name taken by another
        object is an error (two plugins would otherwise shadow each other silently)."""
        if obj is None:
            return lambda o: self.register(name, o)
        old = self._items.get(name)
        if old is not None and old is not obj:
            raise ValueError(f"{self.kind} name {name!r} is registered twice "
                             f"({_origin(old)} and {_origin(obj)})")
        self._items[name] = obj
        return obj

    def get(self, name: str) -> T:
        self._ensure()
        if name not in self._items:
            close = difflib.get_close_matches(name, self._items, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise KeyError(f"unknown {self.kind} {name!r}{hint}; known: {', '.join(self.names())}")
        return self._items[name]

    def names(self) -> List[str]:
        """The names in registration order."""
        self._ensure()
        return list(self._items)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: str) -> bool:
        self._ensure()
        return name in self._items

    def _ensure(self) -> None:
        if self.lazy:
            load_plugins()


def _origin(obj) -> str:
    return getattr(obj, "__module__", type(obj).__module__)


def load_plugins() -> None:
    """Import every module registered under the ``samcl_bench.plugins`` entry-point group, once."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    points = metadata.entry_points(group=PLUGIN_GROUP)
    if not points:
        raise RuntimeError(f"no {PLUGIN_GROUP} entry points found: install the project "
                           f"(bash scripts/install.sh, or pip install -e .)")
    for point in sorted(points, key=lambda p: p.name):
        importlib.import_module(point.value)


def load_module(spec: str) -> None:
    """Import a user module (dotted name or path to a .py file) that registers methods."""
    if not spec.endswith(".py"):
        importlib.import_module(spec)
        return
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"method file not found: {path}")
    mod_spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)


METHODS: Registry[type] = Registry("method", lazy=True)


def register_method(name: str) -> Callable[[type], type]:
    """Class decorator: make a ``SAMStrategy`` subclass available as method ``name``."""

    def wrap(cls: type) -> type:
        METHODS.register(name, cls)
        cls.method_name = name
        return cls

    return wrap


def get_method(name: str) -> type:
    return METHODS.get(name)


def list_methods() -> List[str]:
    """The registered method names, sorted (the order ``methods: all`` runs them in)."""
    return sorted(METHODS.names())


