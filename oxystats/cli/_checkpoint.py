"""A SQLite checkpoint for resumable backfills.

Two tables: ``run`` holds the fingerprint of the arguments that decide what is
fetched (product, range, grouping, instances, server), and ``pages`` holds
every fetched page, keyed by ``(window_index, page_number)``, with its
window's ``total_pages``, the window's totals and the page's rows. Each page
is written in its own transaction as it arrives, so a run killed at any
instant leaves only whole pages behind, and a restart with the same arguments
fetches only what is missing.

The output is always written from the checkpoint, in (window, page, row)
order, so an interrupted and resumed run writes exactly what an uninterrupted
one does.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import attrs

from oxystats import FetchedPage, Pagination, UsagePage, UsageQuery, UsageRow, UsageTotals

__all__ = ["Checkpoint", "CheckpointMismatchError", "StoredPage"]

_FORMAT = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS run (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    format INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    arguments TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pages (
    window_index INTEGER NOT NULL,
    page_number INTEGER NOT NULL,
    total_pages INTEGER NOT NULL,
    window_requests INTEGER NOT NULL,
    window_traffic_bytes INTEGER NOT NULL,
    rows TEXT NOT NULL,
    PRIMARY KEY (window_index, page_number)
);
"""


class CheckpointMismatchError(ValueError):
    """The checkpoint file was written for other arguments (or is not a checkpoint).

    Args:
        message: What is wrong, in one line.
        stored: The arguments the checkpoint was written for, when it was
            written for others and they are readable.
    """

    def __init__(self, message: str, *, stored: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.stored = stored


@attrs.frozen
class StoredPage:
    """One page as the checkpoint holds it."""

    window_index: int
    page_number: int
    total_pages: int
    totals: UsageTotals
    rows: tuple[UsageRow, ...]


def fingerprint(arguments: dict[str, Any]) -> str:
    """A stable digest of the arguments (canonical JSON, SHA-256)."""
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class Checkpoint:
    """An open checkpoint file, bound to one run's arguments.

    Opening creates the file if needed and refuses, with
    `CheckpointMismatchError`, one written for other arguments.
    """

    def __init__(self, path: str | Path, arguments: dict[str, Any]) -> None:
        self.path = Path(path)
        self.arguments = arguments
        self._fingerprint = fingerprint(arguments)
        try:
            # Written from a worker thread, one page at a time (never two at once).
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise CheckpointMismatchError(f"cannot open checkpoint {self.path}: {exc}") from exc
        try:
            self._db.execute("PRAGMA busy_timeout = 10000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.executescript(_SCHEMA)
            self._bind()
        except sqlite3.OperationalError as exc:
            self._db.close()
            raise CheckpointMismatchError(f"cannot open checkpoint {self.path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise CheckpointMismatchError(
                f"{self.path} is not an oxystats checkpoint ({exc}); use another file"
            ) from exc
        except BaseException:
            self._db.close()
            raise

    def _bind(self) -> None:
        row = self._db.execute("SELECT format, fingerprint, arguments FROM run").fetchone()
        if row is None:
            with self._transaction():
                self._db.execute(
                    "INSERT INTO run (id, format, fingerprint, arguments) VALUES (1, ?, ?, ?)",
                    (_FORMAT, self._fingerprint, json.dumps(self.arguments, sort_keys=True)),
                )
            return
        stored_format, stored_fingerprint, stored_arguments = row
        if stored_format != _FORMAT:
            raise CheckpointMismatchError(
                f"checkpoint {self.path} was written by another version of oxystats "
                f"(checkpoint format {stored_format}, not {_FORMAT}); use another file"
            )
        if stored_fingerprint != self._fingerprint:
            raise CheckpointMismatchError(
                f"checkpoint {self.path} was written for other arguments; "
                "rerun with those, or use another file",
                stored=_load(stored_arguments),
            )

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def done(self) -> dict[tuple[int, int], int]:
        """``(window_index, page_number) -> total_pages`` of every stored page."""
        return {
            (window, number): total
            for window, number, total in self._db.execute(
                "SELECT window_index, page_number, total_pages FROM pages"
            )
        }

    def add(self, fetched: FetchedPage) -> None:
        """Store one fetched page, in its own transaction."""
        page = fetched.page
        rows = json.dumps(
            [[list(row.grouped_by), row.requests, row.traffic_bytes] for row in page.data],
            separators=(",", ":"),
        )
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO pages VALUES (?, ?, ?, ?, ?, ?)",
                (
                    fetched.window_index,
                    fetched.number,
                    page.pagination.total_pages,
                    page.totals.requests,
                    page.totals.traffic_bytes,
                    rows,
                ),
            )

    def pages(self) -> Iterator[StoredPage]:
        """Every stored page, in (window, page) order, one at a time."""
        cursor = self._db.execute(
            "SELECT window_index, page_number, total_pages, window_requests, "
            "window_traffic_bytes, rows FROM pages ORDER BY window_index, page_number"
        )
        for window, number, total, requests, traffic, rows in cursor:
            yield StoredPage(
                window,
                number,
                total,
                UsageTotals(requests, traffic),
                tuple(UsageRow(tuple(key), req, size) for key, req, size in json.loads(rows)),
            )

    def fetched_pages(self, query: UsageQuery) -> Iterator[FetchedPage]:
        """Every stored page of ``query`` as fetched, in (window, page) order.

        Pagination is reduced to what was stored: the page number and the
        window's page count.
        """
        windows = query.windows()
        grouping = tuple(group.value for group in query.grouping)
        for stored in self.pages():
            page = UsagePage(
                stored.rows,
                stored.totals,
                Pagination(stored.page_number, 100, len(stored.rows), stored.total_pages),
                grouping,
            )
            # Window indices run on across the parts of a split instance filter.
            window = windows[stored.window_index % len(windows)]
            yield FetchedPage(stored.window_index, window, stored.page_number, page)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _load(arguments_json: str) -> dict[str, Any] | None:
    try:
        arguments = json.loads(arguments_json)
    except ValueError:
        return None
    return arguments if isinstance(arguments, dict) else None
