"""`UsageReport.to_arrow`, `to_pandas` and `to_polars`, and the error when an extra is missing."""

from __future__ import annotations

import sys
from datetime import date

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from oxystats import GroupBy, UsageReport, UsageRow, UsageTotals

REPORT = UsageReport(
    [
        UsageRow(("2025-01-01", "a.example"), 3, 300),
        UsageRow(("2025-01-01", "b.example"), 1, 10),
        UsageRow(("2025-01-02", "a.example"), 2, 2**40),
    ],
    UsageTotals(6, 310 + 2**40),
    (GroupBy.DAY, GroupBy.TARGET),
)


def test_to_arrow() -> None:
    """Arrow: grouping columns lowercase in order (day as date32), then int64 counts."""
    table = REPORT.to_arrow()
    assert table.column_names == ["day", "target", "requests", "traffic_bytes"]
    assert table.schema.field("day").type == pa.date32()
    assert table.schema.field("traffic_bytes").type == pa.int64()
    assert table.column("day").to_pylist()[2] == date(2025, 1, 2)
    assert table.column("traffic_bytes").to_pylist() == [300, 10, 2**40]


def test_to_pandas() -> None:
    """pandas: the same columns, day as datetime64, counts as int64."""
    frame = REPORT.to_pandas()
    assert list(frame.columns) == ["day", "target", "requests", "traffic_bytes"]
    assert pd.api.types.is_datetime64_any_dtype(frame["day"])
    assert frame["requests"].dtype == "int64"
    assert frame["target"].tolist() == ["a.example", "b.example", "a.example"]
    assert frame.groupby("target")["requests"].sum().to_dict() == {"a.example": 5, "b.example": 1}


def test_to_polars() -> None:
    """polars: the same columns, day as Date, counts as Int64."""
    frame = REPORT.to_polars()
    assert frame.columns == ["day", "target", "requests", "traffic_bytes"]
    assert frame.schema["day"] == pl.Date
    assert frame.schema["requests"] == pl.Int64
    assert frame["traffic_bytes"].to_list() == [300, 10, 2**40]


def test_empty_report_keeps_its_columns() -> None:
    """An empty report still has typed columns."""
    empty = UsageReport([], UsageTotals(0, 0), (GroupBy.INSTANCE,))
    assert empty.to_arrow().column_names == ["instance", "requests", "traffic_bytes"]
    assert list(empty.to_pandas().columns) == ["instance", "requests", "traffic_bytes"]
    assert empty.to_polars().height == 0


@pytest.mark.parametrize(
    ("method", "module", "extra"),
    [
        ("to_arrow", "pyarrow", "parquet"),
        ("to_pandas", "pandas", "pandas"),
        ("to_polars", "polars", "polars"),
    ],
)
def test_missing_extra_names_it(
    monkeypatch: pytest.MonkeyPatch, method: str, module: str, extra: str
) -> None:
    """Without the package, the ImportError names the extra to install."""
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=rf"oxystats\[{extra}\]"):
        getattr(REPORT, method)()
