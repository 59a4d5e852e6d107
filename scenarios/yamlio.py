"""Reading a YAML file that must hold a mapping, with one-line errors naming the file."""
from __future__ import annotations

from pathlib import Path
from typing import Type

import yaml


def read_yaml_mapping(path: Path, error: Type[Exception] = ValueError) -> dict:
    """The mapping in ``path`` (empty file -> {}); invalid YAML or another top level raises ``error``."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: the top level must be a mapping")
    return data
