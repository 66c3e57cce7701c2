"""How the run store turns values into JSON text and query results into pandas DataFrames.

JSON is canonical (sorted keys, no whitespace, no NaN) so equal values give equal text.
pandas is imported only inside ``_frame``, when a frame is asked for.
"""
from __future__ import annotations

import dataclasses
import enum
import json
import math
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


def _plain(obj: Any) -> Any:
    """JSON-able copy: dataclasses as dicts, enums by name, non-finite floats as None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _plain(dataclasses.asdict(obj))
    if isinstance(obj, enum.Enum):
        return obj.name
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _json_default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, enum.Enum):
        return obj.name
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False,
                      default=_json_default)


def _frame(cur: sqlite3.Cursor, *, json_cols: Iterable[str] = (), time_cols: Iterable[str] = (),
           bool_cols: Iterable[str] = (), drop: Iterable[str] = ()) -> "pd.DataFrame":
    import pandas as pd  # heavy: only when a frame is asked for

    columns = [d[0] for d in cur.description]
    records = [list(r) for r in cur.fetchall()]
    # JSON is parsed before pandas sees the column: pandas 3 stores a text column with a NULL
    # (a run killed before its result) as a string column with NaN, which is not JSON.
    for i in [columns.index(c) for c in json_cols if c in columns]:
        for r in records:
            r[i] = json.loads(r[i]) if r[i] is not None else None
    df = pd.DataFrame.from_records([tuple(r) for r in records], columns=columns)
    for c in json_cols:  # keep None (not NaN) for missing JSON: callers test ``isinstance(v, dict)``
        if c in df:
            df[c] = pd.Series([r[columns.index(c)] for r in records], index=df.index, dtype=object)
    for c in time_cols:
        if c in df:
            df[c] = pd.to_datetime(df[c], unit="s", utc=True)
    for c in bool_cols:
        if c in df:
            df[c] = df[c].astype(bool)
    return df.drop(columns=[c for c in drop if c in df])
