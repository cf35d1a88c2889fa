"""Writing tables of records: a rich table, CSV, JSON, JSON Lines and Parquet.

Every writer takes records (tuples, one value per column) in batches as they
come and writes them out at once, except the table, which needs them all to
size its columns, and Parquet, which buffers one row group. Memory is bounded
for ``csv``, ``jsonl``, ``json`` and ``parquet``.

`open_writer` puts a writer onto a checked `Destination` (standard output, or
a file written atomically) and, should the run fail or be interrupted, aborts
it before the file is removed.
"""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from oxystats import GroupBy, UsageRow, usage_arrow_schema
from oxystats.cli._destination import STDOUT, Destination, isatty

__all__ = [
    "FORMATS",
    "RecordWriter",
    "format_for",
    "make_writer",
    "open_writer",
    "require_pyarrow",
    "usage_records",
]

FORMATS = ("table", "csv", "json", "jsonl", "parquet")

Record = Sequence[Any]

_PARQUET_ROW_GROUP = 65_536


class RecordWriter(Protocol):
    """Where records go: ``write`` any number of batches, then ``close`` once.

    A run that fails or is interrupted calls ``abort`` instead of ``close``.
    """

    def write(self, records: Iterable[Record]) -> None: ...

    def close(self, footer: Record | None = None) -> None: ...

    def abort(self) -> None: ...


def format_for(output: str | None, *, interactive: bool) -> str:
    """The default format: from the output file's extension, else table on a terminal, else CSV."""
    if output is not None and output != STDOUT:
        suffix = Path(output).suffix.lower().lstrip(".")
        if suffix in FORMATS and suffix != "table":
            return suffix
        return "csv"
    return "table" if interactive else "csv"


def usage_records(rows: Iterable[UsageRow]) -> Iterator[Record]:
    """Usage rows as records: the grouping values, then requests and traffic bytes."""
    for row in rows:
        yield (*row.grouped_by, row.requests, row.traffic_bytes)


class CsvWriter:
    """Comma-separated values with a header line; ``\\n`` line ends."""

    def __init__(self, stream: IO[str], columns: Sequence[str]) -> None:
        self._stream = stream
        self._columns = list(columns)
        self._csv = csv.writer(stream, lineterminator="\n")
        self._started = False

    def _start(self) -> None:
        # The header waits for the first rows: a run that fails early writes nothing.
        if not self._started:
            self._started = True
            self._csv.writerow(self._columns)

    def write(self, records: Iterable[Record]) -> None:
        """Write a batch and flush it."""
        self._start()
        self._csv.writerows(records)
        self._stream.flush()

    def close(self, footer: Record | None = None) -> None:
        """Write the header if no rows came, and flush (CSV has no footer)."""
        self._start()
        self._stream.flush()

    def abort(self) -> None:
        """Nothing to undo: the destination discards what was written."""


class JsonLinesWriter:
    """One JSON object per line, keys in column order."""

    def __init__(self, stream: IO[str], columns: Sequence[str]) -> None:
        self._stream = stream
        self._columns = list(columns)

    def write(self, records: Iterable[Record]) -> None:
        """Write a batch and flush it."""
        for record in records:
            self._stream.write(json.dumps(dict(zip(self._columns, record, strict=True))) + "\n")
        self._stream.flush()

    def close(self, footer: Record | None = None) -> None:
        """Flush."""
        self._stream.flush()

    def abort(self) -> None:
        """Nothing to undo: the destination discards what was written."""


class JsonWriter:
    """A JSON array of objects, written as the records come (one object per line)."""

    def __init__(self, stream: IO[str], columns: Sequence[str]) -> None:
        self._stream = stream
        self._columns = list(columns)
        self._first = True

    def write(self, records: Iterable[Record]) -> None:
        """Write a batch and flush it."""
        for record in records:
            self._stream.write("[\n" if self._first else ",\n")
            self._first = False
            self._stream.write(json.dumps(dict(zip(self._columns, record, strict=True))))
        self._stream.flush()

    def close(self, footer: Record | None = None) -> None:
        """Close the array."""
        self._stream.write("[]\n" if self._first else "\n]\n")
        self._stream.flush()

    def abort(self) -> None:
        """Nothing to undo: the destination discards what was written."""


class TableWriter:
    """A rich table on a terminal (or any stream); for small results."""

    def __init__(self, stream: IO[str], columns: Sequence[str], title: str | None = None) -> None:
        self._stream = stream
        self._columns = list(columns)
        self._title = title
        self._records: list[Record] = []

    def write(self, records: Iterable[Record]) -> None:
        """Keep the batch until `close` (a table is sized from all its rows)."""
        self._records.extend(records)

    def close(self, footer: Record | None = None) -> None:
        """Render the table, with ``footer`` (for example totals) under a rule."""
        from rich.console import Console
        from rich.table import Table

        table = Table(title=self._title, show_footer=footer is not None)
        for index, column in enumerate(self._columns):
            value = None if footer is None else footer[index]
            table.add_column(
                column,
                footer="" if value is None else _cell(value),
                justify="right" if self._numeric(index) else "left",
                no_wrap=True,
            )
        for record in self._records:
            table.add_row(*(_cell(value) for value in record))
        terminal = isatty(self._stream)
        # A file or a pipe has no width: never squash columns for one.
        Console(file=self._stream, width=None if terminal else 10_000).print(table)

    def abort(self) -> None:
        """Drop the rows kept for the table."""
        self._records.clear()

    def _numeric(self, index: int) -> bool:
        return bool(self._records) and all(
            isinstance(record[index], int) for record in self._records[:10]
        )


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


class ParquetWriter:
    """Parquet through pyarrow (the ``parquet`` extra), one row group per 65,536 rows."""

    def __init__(self, stream: IO[bytes], grouping: Sequence[GroupBy | str]) -> None:
        self._pa, self._pq = require_pyarrow()
        self._schema = usage_arrow_schema(grouping)
        self._day = [str(getattr(g, "value", g)).upper() == "DAY" for g in grouping]
        self._writer = self._pq.ParquetWriter(stream, self._schema)
        self._buffer: list[Record] = []

    def write(self, records: Iterable[Record]) -> None:
        """Buffer the batch; write a row group whenever enough rows are in."""
        self._buffer.extend(records)
        while len(self._buffer) >= _PARQUET_ROW_GROUP:
            self._flush(self._buffer[:_PARQUET_ROW_GROUP])
            del self._buffer[:_PARQUET_ROW_GROUP]

    def _flush(self, records: list[Record]) -> None:
        from datetime import date

        columns: list[list[Any]] = [list(column) for column in zip(*records, strict=True)]
        if not columns:
            columns = [[] for _ in self._schema]
        for index, is_day in enumerate(self._day):
            if is_day:
                columns[index] = [date.fromisoformat(v) for v in columns[index]]
        table = self._pa.Table.from_arrays(
            [
                self._pa.array(column, field.type)
                for column, field in zip(columns, self._schema, strict=True)
            ],
            schema=self._schema,
        )
        self._writer.write_table(table)

    def close(self, footer: Record | None = None) -> None:
        """Write what is buffered and the file footer."""
        if self._buffer:
            self._flush(self._buffer)
            self._buffer.clear()
        self._writer.close()

    def abort(self) -> None:
        """Close pyarrow's writer now, while its stream is still open.

        Left open, pyarrow closes it when it is collected, after the stream is
        closed: the write fails and Python prints a traceback on the way out.
        """
        self._buffer.clear()
        try:
            with contextlib.suppress(Exception):
                self._writer.close()
        finally:
            # A close cut short (by a second Ctrl-C, say) must not be retried on collection.
            self._writer.is_open = False


def require_pyarrow() -> tuple[Any, Any]:
    """``pyarrow`` and ``pyarrow.parquet``, or an `ImportError` naming the extra to install."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError(
            "Parquet output needs pyarrow, which is not installed: pip install 'oxystats[parquet]'"
        ) from exc
    return pa, pq


@contextlib.contextmanager
def open_writer(
    destination: Destination,
    fmt: str,
    columns: Sequence[str],
    *,
    grouping: Sequence[GroupBy | str] | None = None,
    title: str | None = None,
) -> Iterator[RecordWriter]:
    """A writer of ``fmt`` onto ``destination``; call its ``close`` before the block ends.

    If the block raises (a failure, Ctrl-C), the writer is aborted and a file
    destination is left as it was.
    """
    with destination.open(binary=fmt == "parquet") as stream:
        writer = make_writer(fmt, stream, columns, grouping=grouping, title=title)
        try:
            yield writer
        except BaseException:
            writer.abort()
            raise


def make_writer(
    fmt: str,
    stream: IO[Any],
    columns: Sequence[str],
    *,
    grouping: Sequence[GroupBy | str] | None = None,
    title: str | None = None,
) -> RecordWriter:
    """A writer of ``fmt`` onto ``stream`` (binary for parquet, text otherwise)."""
    if fmt == "csv":
        return CsvWriter(stream, columns)
    if fmt == "jsonl":
        return JsonLinesWriter(stream, columns)
    if fmt == "json":
        return JsonWriter(stream, columns)
    if fmt == "table":
        return TableWriter(stream, columns, title)
    if fmt == "parquet":
        if grouping is None:
            raise ValueError("parquet output is for usage only")
        return ParquetWriter(stream, grouping)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
