"""`UsageReport` as a DataFrame: pyarrow, pandas and polars, each an optional extra.

Nothing here imports those packages at module level, so ``import oxystats``
never pays for them; each conversion imports its library when called and
raises an `ImportError` naming the extra to install when it is missing.

Every table has the same columns: the grouping names in order, lowercase
(``day``, ``target``, ``instance``), then ``requests`` and ``traffic_bytes``.
``day`` is a calendar date (``date32`` in Arrow, ``Date`` in polars,
``datetime64`` at midnight in pandas); the others are strings and 64-bit
integers.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from datetime import date
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from oxystats._models import GroupBy, UsageRow

__all__ = ["usage_arrow_schema", "usage_arrow_table", "usage_columns"]

_EXTRAS = {"pyarrow": "parquet", "pandas": "pandas", "polars": "polars"}


def require(module: str, what: str) -> ModuleType:
    """Import an optional dependency, or explain which extra brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        # "pyarrow.parquet" comes with pyarrow: name the distribution, not the module.
        distribution = module.partition(".")[0]
        extra = _EXTRAS.get(distribution, distribution)
        raise ImportError(
            f"{what} needs {distribution}, which is not installed: "
            f"pip install 'oxystats[{extra}]' (or pip install {distribution})"
        ) from exc


def usage_columns(grouping: Sequence[GroupBy | str]) -> list[str]:
    """The columns of a usage table: the groupings (lowercase, in order), then the counts.

    Args:
        grouping: The [`GroupBy`][oxystats.GroupBy] values (or their names), in order.

    Returns:
        For example ``["day", "target", "requests", "traffic_bytes"]``.
    """
    return [str(getattr(g, "value", g)).lower() for g in grouping] + ["requests", "traffic_bytes"]


def _columns(
    grouping: Sequence[GroupBy | str], rows: Iterable[UsageRow]
) -> tuple[list[list[str]], list[int], list[int]]:
    keys: list[list[str]] = [[] for _ in grouping]
    requests: list[int] = []
    traffic: list[int] = []
    for row in rows:
        for column, value in zip(keys, row.grouped_by, strict=True):
            column.append(value)
        requests.append(row.requests)
        traffic.append(row.traffic_bytes)
    return keys, requests, traffic


def _is_day(grouping: GroupBy | str) -> bool:
    return str(getattr(grouping, "value", grouping)).upper() == "DAY"


def usage_arrow_schema(grouping: Sequence[GroupBy | str]) -> Any:
    """The Arrow schema of a usage table.

    Its columns are [`usage_columns`][oxystats.usage_columns], ``day`` as ``date32``.

    Needs the ``parquet`` extra (pyarrow).

    Args:
        grouping: The [`GroupBy`][oxystats.GroupBy] values (or their names), in order.

    Returns:
        A `pyarrow.Schema`: grouping columns as ``date32`` (``day``) or
        ``string``, then ``requests`` and ``traffic_bytes`` as ``int64``.
    """
    pa = require("pyarrow", "Arrow output")
    names = usage_columns(grouping)
    fields = [
        pa.field(name, pa.date32() if _is_day(g) else pa.string(), nullable=False)
        for name, g in zip(names, grouping, strict=False)
    ]
    fields += [
        pa.field("requests", pa.int64(), nullable=False),
        pa.field("traffic_bytes", pa.int64(), nullable=False),
    ]
    return pa.schema(fields)


def usage_arrow_table(grouping: Sequence[GroupBy | str], rows: Iterable[UsageRow]) -> Any:
    """Usage rows as a `pyarrow.Table` (needs the ``parquet`` extra).

    Its schema is [`usage_arrow_schema`][oxystats.usage_arrow_schema].

    Handy for writing streamed rows out page by page, for example with a
    `pyarrow.parquet.ParquetWriter`.

    Args:
        grouping: The [`GroupBy`][oxystats.GroupBy] values (or their names) of the rows, in order.
        rows: The rows.
    """
    pa = require("pyarrow", "Arrow output")
    keys, requests, traffic = _columns(grouping, rows)
    arrays: list[Any] = [
        pa.array([date.fromisoformat(v) for v in column], pa.date32())
        if _is_day(g)
        else pa.array(column, pa.string())
        for column, g in zip(keys, grouping, strict=True)
    ]
    arrays += [pa.array(requests, pa.int64()), pa.array(traffic, pa.int64())]
    return pa.Table.from_arrays(arrays, schema=usage_arrow_schema(grouping))


def to_arrow(grouping: Sequence[GroupBy | str], rows: Sequence[UsageRow]) -> Any:
    """`UsageReport.to_arrow`: the report's rows as a `pyarrow.Table`."""
    require("pyarrow", "UsageReport.to_arrow()")
    return usage_arrow_table(grouping, rows)


def to_pandas(grouping: Sequence[GroupBy | str], rows: Sequence[UsageRow]) -> Any:
    """`UsageReport.to_pandas`: the report's rows as a `pandas.DataFrame`."""
    pd = require("pandas", "UsageReport.to_pandas()")
    keys, requests, traffic = _columns(grouping, rows)
    data: dict[str, Any] = {}
    for name, column, g in zip(usage_columns(grouping), keys, grouping, strict=False):
        data[name] = (
            pd.to_datetime(pd.Series(column, dtype="object"), format="%Y-%m-%d")
            if _is_day(g)
            else pd.Series(column, dtype="object")
        )
    data["requests"] = pd.Series(requests, dtype="int64")
    data["traffic_bytes"] = pd.Series(traffic, dtype="int64")
    return pd.DataFrame(data, columns=usage_columns(grouping))


def to_polars(grouping: Sequence[GroupBy | str], rows: Sequence[UsageRow]) -> Any:
    """`UsageReport.to_polars`: the report's rows as a `polars.DataFrame`."""
    pl = require("polars", "UsageReport.to_polars()")
    keys, requests, traffic = _columns(grouping, rows)
    names = usage_columns(grouping)
    series: list[Any] = [
        pl.Series(name, [date.fromisoformat(v) for v in column], dtype=pl.Date)
        if _is_day(g)
        else pl.Series(name, column, dtype=pl.String)
        for name, column, g in zip(names, keys, grouping, strict=False)
    ]
    series += [
        pl.Series("requests", requests, dtype=pl.Int64),
        pl.Series("traffic_bytes", traffic, dtype=pl.Int64),
    ]
    return pl.DataFrame(series)
