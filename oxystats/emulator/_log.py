"""The request log and counters: what tests and the admin endpoint inspect.

Requests are identified by a key id such as ``account-1/key-1`` (the
account and the key's position in the configuration), never by the key.
"""

from __future__ import annotations

import threading
from typing import Any

import attrs

__all__ = ["ANONYMOUS", "UNKNOWN_KEY", "Counters", "LogEntry", "RequestLog"]

ANONYMOUS = "-"
"""The key id of a request without a usable ``Authorization`` header."""

UNKNOWN_KEY = "?"
"""The key id of a request with a key the emulator does not know."""


@attrs.frozen
class LogEntry:
    """One API request: when it arrived (`time.monotonic`), what it asked, how it ended.

    ``status`` is the status line sent (for a dropped connection too);
    ``fault`` names the injected fault, if any (e.g. ``"drop_connection"``).
    """

    time: float
    method: str
    path: str
    query: str
    key_id: str
    status: int
    fault: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The entry as JSON-ready data."""
        return attrs.asdict(self)


class Counters:
    """Request counts: in total, per status, per key id and per injected fault. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0
        self.by_status: dict[int, int] = {}
        self.by_key: dict[str, int] = {}
        self.by_fault: dict[str, int] = {}

    def add(self, key_id: str, status: int, fault: str | None = None) -> None:
        """Count one finished request."""
        with self._lock:
            self.total += 1
            self.by_status[status] = self.by_status.get(status, 0) + 1
            self.by_key[key_id] = self.by_key.get(key_id, 0) + 1
            if fault is not None:
                self.by_fault[fault] = self.by_fault.get(fault, 0) + 1

    def reset(self) -> None:
        """Back to zero."""
        with self._lock:
            self.total = 0
            self.by_status.clear()
            self.by_key.clear()
            self.by_fault.clear()

    def as_json(self) -> dict[str, Any]:
        """A consistent snapshot (statuses become string keys, as in JSON)."""
        with self._lock:
            return {
                "total": self.total,
                "by_status": {str(status): n for status, n in sorted(self.by_status.items())},
                "by_key": dict(sorted(self.by_key.items())),
                "by_fault": dict(sorted(self.by_fault.items())),
            }

    def __repr__(self) -> str:
        return f"Counters({self.as_json()!r})"


class RequestLog(list[LogEntry]):
    """A list of `LogEntry`, capped at ``limit`` entries (the oldest go first)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self._lock = threading.Lock()

    def record(self, entry: LogEntry) -> None:
        """Append an entry, trimming in batches so appending stays O(1) amortised."""
        with self._lock:
            self.append(entry)
            if len(self) > self.limit:
                del self[: len(self) - max(1, self.limit // 2)]

    def reset(self) -> None:
        """Forget every entry."""
        with self._lock:
            self.clear()

    def snapshot(self, last: int | None = None) -> list[LogEntry]:
        """A copy of the (last ``last``) entries, safe to iterate while serving."""
        with self._lock:
            return list(self if last is None else self[-last:] if last else [])
