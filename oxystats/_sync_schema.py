"""The tables a sync keeps, as SQLAlchemy Core tables. Documented in docs/sync.md: keep both equal.

The usage table has one row per product, day and key of the grouping, and
its columns follow the grouping: ``day`` always, ``target`` with TARGET,
``instance`` with INSTANCE. ``sync_runs`` has one row per product per sync.
Names need no quotes, so the tables can be queried by hand.
"""

from __future__ import annotations

from collections.abc import Collection

import sqlalchemy as sa

from oxystats._models import GroupBy
from oxystats._sync_plan import RUNS_TABLE

__all__: list[str] = []

KEY_COLUMNS = {GroupBy.DAY: "day", GroupBy.TARGET: "target", GroupBy.INSTANCE: "instance"}
"""The column of each grouping's key."""

VALUE_COLUMNS = ("requests", "traffic_bytes", "run_id")
"""The columns after the keys."""

RUNNING, COMPLETE, FAILED, INTERRUPTED = "running", "complete", "failed", "interrupted"
"""The statuses of a run in `sync_runs`."""

_RUNS_COLUMNS = frozenset(
    {
        "id",
        "usage_table",
        "product",
        "group_by",
        "status",
        "started_at",
        "finished_at",
        "as_of",
        "first_day",
        "last_day",
        "written_through",
        "complete_through",
        "requests",
        "rows_written",
        "error",
    }
)


def usage_table(metadata: sa.MetaData, name: str, grouping: tuple[GroupBy, ...]) -> sa.Table:
    """The usage table ``name`` for ``grouping`` (DAY first)."""
    keys = [
        sa.Column(
            KEY_COLUMNS[group],
            sa.Date if group is GroupBy.DAY else sa.String,
            primary_key=True,
            nullable=False,
        )
        for group in grouping
    ]
    return sa.Table(
        name,
        metadata,
        sa.Column("product", sa.String, primary_key=True, nullable=False),
        *keys,
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("traffic_bytes", sa.BigInteger, nullable=False),
        sa.Column("run_id", sa.Integer, nullable=False),
    )


def runs_table(metadata: sa.MetaData) -> sa.Table:
    """The `sync_runs` table."""
    return sa.Table(
        RUNS_TABLE,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("usage_table", sa.String, nullable=False),
        sa.Column("product", sa.String, nullable=False),
        sa.Column("group_by", sa.String, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_day", sa.Date, nullable=False),
        sa.Column("last_day", sa.Date, nullable=False),
        sa.Column("written_through", sa.Date, nullable=True),
        sa.Column("complete_through", sa.Date, nullable=True),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("rows_written", sa.Integer, nullable=False),
        sa.Column("error", sa.String, nullable=True),
        sa.Index(f"{RUNS_TABLE}_by_table", "usage_table", "product"),
    )


def grouping_of_columns(columns: Collection[str]) -> tuple[GroupBy, ...] | None:
    """The grouping of a usage table with these columns, or `None` if it is no usage table."""
    grouping = tuple(group for group, column in KEY_COLUMNS.items() if column in columns)
    expected = {"product", *(KEY_COLUMNS[group] for group in grouping), *VALUE_COLUMNS}
    if GroupBy.DAY not in grouping or set(columns) != expected:
        return None
    return grouping


def is_runs_table(columns: Collection[str]) -> bool:
    """Whether a table with these columns is a `sync_runs` table."""
    return set(columns) == _RUNS_COLUMNS
