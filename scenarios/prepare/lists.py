"""Split lists (shipped with the package or `--split-from`) and the reference's points (`--points-from`).

Accepted `--split-from` forms (names are matched by stem, so `x.jpg`, `x.png` and `x` are one name):
- a folder holding the reference's `<split>/points.json` (or `<split>/masks/points.json`): the keys;
- a JSON file `{"train": [names...], "test": [names...]}`;
- a folder holding `<split>.json` (a list of names) or `<split>.txt` (one name per line).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from scenarios.checks import check_points
from scenarios.fileio import ConfigError
from scenarios.prepare.common import SPLIT_ORDER, stem_of

SHIPPED = Path(__file__).resolve().parent / "splits"


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None


def _points_files(folder: Path) -> dict[str, Path]:
    out = {}
    for split in SPLIT_ORDER:
        for rel in (f"{split}/points.json", f"{split}/masks/points.json"):
            if (folder / rel).is_file():
                out[split] = folder / rel
                break
    return out


def _name_lists(path: Path) -> dict[str, list]:
    if path.is_file():
        data = _read_json(path)
        if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
            raise ConfigError(f"{path}: expected {{\"train\": [names...], \"test\": [names...]}}")
        return data
    found = {split: list(_read_json(f)) for split, f in _points_files(path).items()}
    for ext, read in ((".json", _read_json), (".txt", lambda f: f.read_text().split())):
        if not found:
            found = {s: read(path / f"{s}{ext}") for s in SPLIT_ORDER if (path / f"{s}{ext}").is_file()}
    if not all(isinstance(v, list) for v in found.values()):
        raise ConfigError(f"{path}: every <split>.json must be a list of names")
    return found


def read_split_lists(path: Path | str) -> dict[str, set]:
    """split -> set of stems; a one-line error when nothing usable is there or the lists overlap."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--split-from not found: {path}")
    lists = {split: {stem_of(str(n)) for n in names} for split, names in _name_lists(path).items()}
    if not lists or not any(lists.values()):
        raise ConfigError(f"{path}: no split lists (expected <split>/points.json files, a JSON "
                          f"{{\"train\": [...], \"test\": [...]}} or <split>.txt / <split>.json files)")
    seen: dict[str, str] = {}
    for split, stems in lists.items():
        for stem in sorted(stems):
            if stem in seen:
                raise ConfigError(f"{path}: {stem!r} is in both {seen[stem]} and {split}")
            seen[stem] = split
    return lists


def shipped_split_lists(dataset: str) -> Optional[dict[str, set]]:
    path = SHIPPED / f"{dataset}.json"
    return read_split_lists(path) if path.is_file() else None


def read_reference_points(folder: Path | str, num_points: int) -> dict[str, list]:
    """stem -> [[[x, y], ...], [1, ...]] from every `<split>/points.json` under `folder`."""
    folder = Path(folder)
    files = _points_files(folder) if folder.is_dir() else {}
    if not files:
        raise FileNotFoundError(f"--points-from: no <split>/points.json (or <split>/masks/points.json) "
                                f"under {folder}")
    out: dict[str, list] = {}
    for split, path in files.items():
        for name, entry in _read_json(path).items():
            if not (isinstance(entry, list) and len(entry) == 2 and len(entry[0]) == len(entry[1])):
                raise ConfigError(f"{path}: {name}: expected [[[x, y], ...], [1, ...]]")
            if len(entry[0]) != num_points:
                raise ConfigError(f"{path}: {name} has {len(entry[0])} points but --num-points is "
                                  f"{num_points}")
            check_points(*entry, f"{path}: {name}")  # finite, inside [0, 1024), labels 0/1
            out[stem_of(name)] = entry
    return out
