"""One sync of a table at a time: a lock held for the whole run, that dies with the process.

SQLite: an exclusive lock on a file beside the database, named after the
table (``usage.sqlite.usage.lock``), taken without waiting; the operating
system drops it when the process ends, however it ends (SIGKILL included).

PostgreSQL: a session-level advisory lock keyed by the table's name, taken
without waiting on a connection held for the whole run; the server drops it
when that connection ends, however it ends.

A sync that finds the lock taken refuses at once with `SyncInProgressError`,
before it writes or requests anything.
"""

from __future__ import annotations

import errno
import hashlib
import os
import sys
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa

from oxystats._errors import DatabaseError, SyncInProgressError

__all__: list[str] = []

if sys.platform == "win32":  # pragma: no cover - the suite runs on Linux
    import msvcrt

    def _try_lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


_HELD = {errno.EACCES, errno.EAGAIN, errno.EWOULDBLOCK, getattr(errno, "EDEADLOCK", errno.EDEADLK)}
"""The errors a non-blocking lock attempt gives when someone else holds the lock."""


class RunLock(Protocol):
    """A lock a sync holds from before its first read to after its last write."""

    def acquire(self) -> None:
        """Take the lock now, or raise `SyncInProgressError`."""

    def release(self) -> None:
        """Let the lock go; a lock not held is left alone."""


def _refusal(table: str, database: str) -> SyncInProgressError:
    return SyncInProgressError(
        f"another sync of table {table!r} in {database} is running; this one did nothing "
        "(run it again when the other one is done)"
    )


class FileLock:
    """An exclusive lock on ``path``, held through an open file."""

    def __init__(self, path: Path, *, table: str, database: str) -> None:
        self.path = path
        self._table = table
        self._database = database
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock now, or raise `SyncInProgressError`."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise DatabaseError(
                f"cannot open the lock file {self.path}: {exc.strerror or exc}"
            ) from exc
        try:
            _try_lock(fd)
        except OSError as exc:
            os.close(fd)
            if exc.errno in _HELD:
                raise _refusal(self._table, self._database) from None
            raise DatabaseError(f"cannot lock {self.path}: {exc.strerror or exc}") from exc
        self._fd = fd

    def release(self) -> None:
        """Let the lock go (closing the file does)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def advisory_key(table: str) -> int:
    """The advisory lock key of a usage table: 64 signed bits of a digest of its name."""
    digest = hashlib.sha256(f"oxystats sync {table}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


SCHEMA_KEY = advisory_key("\0schema")
"""Held for the transaction that creates tables, so two first syncs never race to create them."""


class AdvisoryLock:
    """A PostgreSQL session advisory lock, held on a connection of its own."""

    def __init__(self, engine: sa.Engine, *, table: str, database: str) -> None:
        self._engine = engine
        self._key = advisory_key(table)
        self._table = table
        self._database = database
        self._connection: sa.Connection | None = None

    def acquire(self) -> None:
        """Take the lock now, or raise `SyncInProgressError`."""
        connection = self._engine.connect()
        try:
            taken = connection.execute(sa.select(sa.func.pg_try_advisory_lock(self._key)))
            held = bool(taken.scalar_one())
            # A session lock outlives the transaction; ending it keeps the connection idle.
            connection.commit()
        except BaseException:
            connection.close()
            raise
        if not held:
            connection.close()
            raise _refusal(self._table, self._database)
        self._connection = connection

    def release(self) -> None:
        """Let the lock go; if that fails, drop the connection, which drops the lock."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            connection.execute(sa.select(sa.func.pg_advisory_unlock(self._key)))
            connection.commit()
        except sa.exc.SQLAlchemyError:
            # Back in the pool, the connection would keep the lock: end it instead.
            connection.invalidate()
        finally:
            connection.close()
