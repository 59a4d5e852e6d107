"""Leaderboard columns. The generic ones are in ``leaderboard.COLUMNS``; a method contributes its
own by declaring ``report_columns`` (e.g. SAMCL's selector accuracy): the run writes their specs
into the record (``columns``) and their values into ``extra[key]``, so the leaderboard shows them
while knowing no method by name."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict


@dataclass(frozen=True)
class Column:
    key: str          # key in summarize_record's output (a contributed column: a key of ``extra``)
    label: str        # header without the arrow
    direction: str    # "higher" | "lower"
    scale: float      # display multiplier (100 for IoU points)
    decimals: int
    optional: bool = False  # shown only when some record has a value

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Column":
        """A contributed column read from a record (always optional)."""
        if data.get("direction") not in ("higher", "lower") or not data.get("key"):
            raise ValueError(f"a record's column needs a key and direction higher|lower, got {data!r}")
        return cls(key=str(data["key"]), label=str(data.get("label", data["key"])),
                   direction=data["direction"], scale=float(data.get("scale", 1)),
                   decimals=int(data.get("decimals", 2)), optional=True)
