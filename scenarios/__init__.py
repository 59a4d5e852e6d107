"""Domain streams: YAML configs (config), the paper's folder format (folder), point prompts (points),
the built-in synthetic domains (synthetic, shapes) and the Avalanche benchmark (stream).

Import from the submodules; this package imports nothing heavy so that `--help` stays fast.
"""
