"""The methods plugin: importing it declares every built-in method (entry point
``samcl_bench.plugins``: ``methods = "methods.plugin"`` in pyproject.toml).

Each module of ``methods/baselines/`` and ``methods/samcl/`` whose name does not start with ``_``
is read for its ``@register_method("name")`` classes and imported on the first lookup of one of
them (``benchmark.core.registry.declare_methods``), so listing the methods imports no torch.
"""
from benchmark.core.registry import declare_methods

declare_methods(["methods.baselines", "methods.samcl"])
