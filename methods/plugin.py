"""The methods plugin: importing it registers every built-in method (entry point
``samcl_bench.plugins``: ``methods = "methods.plugin"`` in pyproject.toml).

Each module of ``methods/baselines/`` and ``methods/samcl/`` whose name does not start with ``_``
is imported, so that its ``@register_method`` decorators run.
"""
import importlib
import pkgutil

for _package in ("methods.baselines", "methods.samcl"):
    for _info in pkgutil.iter_modules(importlib.import_module(_package).__path__):
        if not _info.name.startswith("_"):
            importlib.import_module(f"{_package}.{_info.name}")
