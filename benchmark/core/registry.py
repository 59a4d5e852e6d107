"""The generic registry of named things: methods (``METHODS``, filled by plugins) and backbones
(``benchmark.backbones.registry.BACKBONES``).

A :class:`Registry` maps names to objects (classes, infos, paths, callables). The harness never
imports the methods package: methods register themselves (``@register_method("name")``) when their
package is loaded as a *plugin*. Plugins are the modules named under the entry-point group
``samcl_bench.plugins`` in an installed distribution's metadata (this project names
``methods.plugin``; another package can add its own methods the same way), plus any module or
``.py`` file given with ``--method-file`` / ``method_modules``. They are imported on the first
lookup, not at start-up (the methods import Avalanche, which takes seconds).

A plugin may *declare* its methods instead of importing them (:func:`declare_methods`): their
modules are read as text, each ``@register_method("name")`` class is registered as a
:class:`Declared` entry (module, one-line description, tap), and the module is imported on the
first ``get(name)``. So ``list`` answers without importing torch or Avalanche.
"""
from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import inspect
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Dict, Generic, Iterable, List, Optional, Tuple, TypeVar

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
        if isinstance(obj, Declared) and old is not None and _origin(old) == obj.module:
            return old  # declared after its module was imported: keep the real object
        if isinstance(old, Declared) and _origin(obj) == old.module:
            old = None  # the declared entry's module registering the real object
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
        item = self._items[name]
        if isinstance(item, Declared):
            importlib.import_module(item.module)
            item = self._items[name]
            if isinstance(item, Declared):
                raise RuntimeError(f"module {item.module} declares {self.kind} {name!r} but "
                                   f"importing it did not register it")
        return item

    def peek(self, name: str):
        """The registered object, or its :class:`Declared` entry if its module is not imported
        yet (importing nothing)."""
        self._ensure()
        if name not in self._items:
            self.get(name)  # the unknown-name error
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
    if isinstance(obj, Declared):
        return obj.module
    return getattr(obj, "__module__", type(obj).__module__)


@dataclass(frozen=True)
class Declared:
    """A method known from its module's text, before the module is imported."""
    module: str     # dotted module name
    doc: str        # the class docstring (else the module's)
    tap: str        # the ``tap`` class attribute, through the base classes ("?" if not literal)


def declare_methods(packages: Iterable[str]) -> None:
    """Register every ``@register_method("name")`` class of the packages' modules (names not
    starting with ``_``) as a :class:`Declared` entry, reading the files without importing them.
    Base classes are followed through ``from X import Name`` lines of the same project."""
    for package in packages:
        root = Path(importlib.util.find_spec(package).submodule_search_locations[0])
        for path in sorted(root.glob("*.py")):
            if not path.stem.startswith("_"):
                for name, entry in _declared_in(f"{package}.{path.stem}"):
                    METHODS.register(name, entry)


def _parse(module: str) -> Optional[Tuple[ast.Module, Dict[str, str]]]:
    """A module's tree and its ``from X import Name`` map (Name -> X) for modules of the same
    top-level package; None if not a source file."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    imported = {a.asname or a.name: node.module for node in tree.body
                if isinstance(node, ast.ImportFrom) and node.module and not node.level
                and node.module.split(".")[0] == module.split(".")[0]  # never import others
                for a in node.names}
    return tree, imported


def _declared_in(module: str) -> List[Tuple[str, Declared]]:
    tree, _ = _parse(module)
    out = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            for dec in node.decorator_list:
                if (isinstance(dec, ast.Call) and getattr(dec.func, "id", None) == "register_method"
                        and dec.args and isinstance(dec.args[0], ast.Constant)):
                    doc = ast.get_docstring(node) or ast.get_docstring(tree) or ""
                    out.append((dec.args[0].value,
                                Declared(module, doc.strip(), _class_tap(module, node.name) or "?")))
    return out


def _class_tap(module: str, name: str, depth: int = 0) -> Optional[str]:
    """The literal ``tap`` of class ``name`` in ``module`` or of its bases, depth first."""
    parsed = _parse(module) if depth < 10 else None
    if parsed is None:
        return None
    tree, imported = parsed
    node = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name), None)
    if node is None:
        return _class_tap(imported[name], name, depth + 1) if name in imported else None
    for stmt in node.body:
        target = stmt.targets[0] if isinstance(stmt, ast.Assign) else getattr(stmt, "target", None)
        value = getattr(stmt, "value", None)
        if getattr(target, "id", None) == "tap" and isinstance(value, ast.Constant):
            return value.value
    for base in node.bases:
        if isinstance(base, ast.Name):
            found = _class_tap(imported.get(base.id, module), base.id, depth + 1)
            if found:
                return found
    return None


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


def method_doc(name: str) -> Tuple[str, str]:
    """(tap, description: the class docstring, else its module's) of method ``name``, without
    importing a declared method."""
    item = METHODS.peek(name)
    if isinstance(item, Declared):
        return item.tap, item.doc
    doc = item.__doc__ or importlib.import_module(item.__module__).__doc__ or ""
    return item.tap, inspect.cleandoc(doc)


def method_summary(name: str) -> Tuple[str, str]:
    """(tap, first line of the description) of method ``name`` (what ``list`` prints)."""
    tap, doc = method_doc(name)
    return tap, doc.splitlines()[0] if doc else ""


def list_methods() -> List[str]:
    """The registered method names, sorted (the order ``methods: all`` runs them in)."""
    return sorted(METHODS.names())


