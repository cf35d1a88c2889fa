"""`Emulator`: the state behind one emulated Dashboard API.

It owns the data, the mutable runtime settings (limits, faults, arrival
jitter and the clock can be changed while serving), the limiter, the fault
and delay streams, the request log and counters, and the caches that make
repeated queries cheap. The HTTP side is in `_app`, built only when
`Emulator.app` is first asked for; this module answers "what is the body for
this query string".
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

from ._clock import check_now, last_visible_second
from ._config import ArrivalJitter, EmulatorConfig, Faults, RateLimits
from ._dataset import GROUPINGS, Cell, GroundTruth, Row, SyntheticUsage, epoch_bounds, usage_for
from ._faults import FaultInjector
from ._jitter import ArrivalDelays
from ._log import Counters, LogEntry, RequestLog
from ._params import BadRequest, UsageQuery, parse_instances_query, parse_usage_query
from ._ratelimit import Limiter
from ._responses import error_body, instances_page, usage_page

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["Emulator", "KeyIdentity"]

# Parsed query strings kept per emulator: clients repeat the same pages.
_PARSED_CACHE_SIZE = 4096

_CacheKey = tuple[str, int, int, tuple[str, ...], frozenset[int] | None]


@attrs.frozen
class KeyIdentity:
    """Who a key belongs to, by a label that is safe to log."""

    key_id: str
    account: str


@attrs.frozen
class _Clock:
    """The emulator's "now" and the last epoch second visible at it, read together."""

    now: datetime
    last_second: int


def _clock_at(now: datetime | None) -> _Clock | None:
    return None if now is None else _Clock(now, last_visible_second(now))


def _delays_for(jitter: ArrivalJitter) -> ArrivalDelays | None:
    # No stream at all when off: the request path then draws and sleeps nothing.
    return ArrivalDelays(jitter) if jitter.active else None


class _Result:
    """A full usage result, with the rendered pages asked for so far."""

    __slots__ = ("grouping", "pages", "rows", "totals")

    def __init__(self, rows: list[Row], totals: tuple[int, int], grouping: tuple[str, ...]):
        self.rows = rows
        self.totals = totals
        self.grouping = grouping
        self.pages: dict[tuple[int, int], bytes] = {}


class Emulator:
    """A faithful local Dashboard API; ``emulator.app`` is its Starlette app."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config if config is not None else EmulatorConfig()
        self.data: SyntheticUsage = usage_for(self.config.dataset)
        self._keys = {
            key: KeyIdentity(key_id=f"{account}/key-{number}", account=account)
            for number, (key, account) in enumerate(self.config.keys.items(), start=1)
        }
        self._lock = threading.Lock()
        self._limits = self.config.limits
        self._limiter = Limiter(self._limits)
        self._faults = self.config.faults
        self._injector = FaultInjector(self._faults)
        self._jitter = self.config.jitter
        self._arrival_delays = _delays_for(self._jitter)
        self._clock = _clock_at(self.config.now)
        self.log = RequestLog(self.config.log_size)
        self.counters = Counters()
        self._results: OrderedDict[_CacheKey, _Result] = OrderedDict()
        self._parsed: OrderedDict[str, UsageQuery | BadRequest] = OrderedDict()
        self._instances_json = [record.as_json() for record in self.data.instances]
        self._instance_pages: dict[str, tuple[int, bytes]] = {}
        self._app: Starlette | None = None

    def __repr__(self) -> str:
        return f"Emulator(dataset={self.config.dataset!r}, requests={self.counters.total})"

    @property
    def app(self) -> Starlette:
        """The Starlette app serving this emulator (built on first use; needs starlette)."""
        if self._app is None:
            # Imported here: the state above loads, and answers, without Starlette.
            from ._app import build_app

            self._app = build_app(self)
        return self._app

    # -- runtime settings ---------------------------------------------------------------

    @property
    def limits(self) -> RateLimits:
        """The rate limits in force; assigning new ones starts them with empty state."""
        return self._limits

    @limits.setter
    def limits(self, limits: RateLimits) -> None:
        with self._lock:
            self._limits = limits
            self._limiter = Limiter(limits)

    @property
    def faults(self) -> Faults:
        """The faults in force; assigning new ones restarts the stream from their seed."""
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        with self._lock:
            self._faults = faults
            self._injector = FaultInjector(faults)

    @property
    def jitter(self) -> ArrivalJitter:
        """The arrival jitter in force; assigning a new one restarts the delays from its seed."""
        return self._jitter

    @jitter.setter
    def jitter(self, jitter: ArrivalJitter) -> None:
        with self._lock:
            self._jitter = jitter
            self._arrival_delays = _delays_for(jitter)

    @property
    def now(self) -> datetime | None:
        """The emulator's clock: usage recorded after it is invisible; ``None`` for no clock.

        Assign an aware datetime to move it anywhere (a naive one is a
        `ValueError`), or ``None`` to make every day visible again.
        """
        clock = self._clock
        return None if clock is None else clock.now

    @now.setter
    def now(self, now: datetime | None) -> None:
        clock = _clock_at(check_now(now))
        with self._lock:
            self._clock = clock

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward by ``delta``; return the new "now".

        Raises:
            TypeError: ``delta`` is not a `datetime.timedelta`.
            ValueError: ``delta`` is negative or leaves the calendar, or the
                emulator has no clock.
        """
        if not isinstance(delta, timedelta):
            raise TypeError(f"delta must be a datetime.timedelta, got {delta!r}")
        if delta < timedelta(0):
            raise ValueError(f"advance moves the clock forward; assign now to go back ({delta})")
        with self._lock:
            clock = self._clock
            if clock is None:
                raise ValueError("the emulator has no clock: assign now first")
            try:
                now = clock.now + delta
            except OverflowError:
                raise ValueError(f"advancing {clock.now} by {delta} leaves the calendar") from None
            self._clock = _clock_at(now)
        return now

    @property
    def limiter(self) -> Limiter:
        """The current limiter (replaced by `reset` and by assigning `limits`)."""
        return self._limiter

    @property
    def injector(self) -> FaultInjector:
        """The current fault stream (replaced by `reset` and by assigning `faults`)."""
        return self._injector

    @property
    def arrival_delays(self) -> ArrivalDelays | None:
        """The current delay stream, ``None`` without jitter (replaced like `injector`)."""
        return self._arrival_delays

    def reset(self) -> None:
        """Clear the log, the counters and the limiter state; restart the fault and delay streams.

        The settings (limits, faults, jitter, the clock) stay as they are.
        """
        with self._lock:
            self._limiter = Limiter(self._limits)
            self._injector = FaultInjector(self._faults)
            self._arrival_delays = _delays_for(self._jitter)
        self.log.reset()
        self.counters.reset()

    def stats(self) -> dict[str, Any]:
        """Counters and current in-flight requests, as JSON-ready data."""
        return {
            **self.counters.as_json(),
            "in_flight": self._limiter.in_flight(),
            "log_entries": len(self.log),
        }

    # -- data -----------------------------------------------------------------------------

    @property
    def products(self) -> tuple[str, ...]:
        """The products this emulator knows."""
        return self.config.dataset.products

    @property
    def targets(self) -> list[str]:
        """Every target hostname of the dataset."""
        return list(self.data.targets)

    def instance_list(self, products: Iterable[str] | None = None) -> list[dict[str, str]]:
        """The instances (as the endpoint lists them), optionally of some products only."""
        wanted = None if products is None else {_text(p) for p in products}
        return [
            dict(item)
            for item in self._instances_json
            if wanted is None or item["product"] in wanted
        ]

    def iter_cells(self, product: str, day: date) -> Iterator[Cell]:
        """Every non-zero usage cell of ``product`` on the UTC calendar ``day``."""
        return self.data.iter_cells(_text(product), day)

    def ground_truth(
        self,
        product: str,
        date_from: datetime,
        date_to: datetime,
        group_by: Sequence[str] | str,
        instances: Iterable[str] | None = None,
    ) -> GroundTruth:
        """The exact usage for an inclusive range of aware datetimes, with no 31-day rule.

        ``instances`` filters like ``instances[]`` does: unknown UUIDs are
        ignored, and if none is known the result is empty. With a clock,
        usage recorded after [`now`][oxystats.emulator.Emulator.now] is left
        out, as the API leaves it out.
        """
        product = _text(product)
        if product not in self.products:
            raise ValueError(f"unknown product {product!r}")
        for name, value in (("date_from", date_from), ("date_to", date_to)):
            if not isinstance(value, datetime) or value.utcoffset() is None:
                raise ValueError(f"{name} must be a timezone-aware datetime")
        grouping = (_text(group_by),) if isinstance(group_by, str) else tuple(map(_text, group_by))
        if not grouping or any(g not in GROUPINGS for g in grouping):
            raise ValueError(f"group_by must be one or more of {GROUPINGS}, got {grouping!r}")
        if len(set(grouping)) != len(grouping):
            raise ValueError("group_by must not repeat a grouping")
        wanted = None
        if instances is not None:
            index = self.data.index_of_uuid
            wanted = frozenset(index[u] for u in map(_text, instances) if u in index)
        low, high = self._visible_bounds(date_from, date_to)
        rows, requests, size = self.data.aggregate(product, low, high, grouping, wanted)
        return GroundTruth(
            grouping=grouping,
            rows={key: (r, b) for key, r, b in rows},
            totals=(requests, size),
        )

    # -- request handling (called by the app) -----------------------------------------

    def identify(self, authorization: bytes | None) -> KeyIdentity | int:
        """The caller of a request, or the error status: 403 without a usable key, 401 unknown."""
        if authorization is None:
            return 403
        scheme, _, token = authorization.decode("latin-1").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or " " in token:
            return 403
        return self._keys.get(token, 401)

    def record(
        self,
        arrived: float,
        method: str,
        path: str,
        query: str,
        key_id: str,
        status: int,
        fault: str | None = None,
    ) -> None:
        """Log and count one finished API request."""
        self.log.record(LogEntry(arrived, method, path, query, key_id, status, fault))
        self.counters.add(key_id, status, fault)

    def usage_response(self, query_string: str) -> tuple[int, bytes]:
        """Status and body for ``GET /stats/v1/usage?<query_string>``."""
        query = self._parsed_query(query_string)
        if isinstance(query, BadRequest):
            return 400, error_body(400, query.message)
        return 200, self._usage_page(self._result(self._cache_key(query)), query)

    def cached_usage_response(self, query_string: str) -> tuple[int, bytes] | None:
        """`usage_response` if it needs no aggregation (a cached result, or a 400), else None."""
        query = self._parsed_query(query_string)
        if isinstance(query, BadRequest):
            return 400, error_body(400, query.message)
        key = self._cache_key(query)
        with self._lock:
            result = self._results.get(key)
            if result is None:
                return None
            self._results.move_to_end(key)
        return 200, self._usage_page(result, query)

    def _visible_bounds(self, date_from: datetime, date_to: datetime) -> tuple[int, int]:
        """The epoch-second bounds of a range, its end cut to the clock's last visible second."""
        low, high = epoch_bounds(date_from, date_to)
        clock = self._clock
        if clock is not None and clock.last_second < high:
            high = clock.last_second
        return low, high

    def _cache_key(self, query: UsageQuery) -> _CacheKey:
        # The key holds the bounds cut to the clock, so a cached result is shared
        # only by queries that see exactly the same usage, under whatever "now".
        low, high = self._visible_bounds(query.date_from, query.date_to)
        return (query.product, low, high, query.grouping, query.instances)

    @staticmethod
    def _usage_page(result: _Result, query: UsageQuery) -> bytes:
        page_key = (query.page, query.per_page)
        body = result.pages.get(page_key)
        if body is None:
            body = usage_page(
                result.rows, result.totals, result.grouping, query.page, query.per_page
            )
            # Bounded by the number of distinct (page, per_page) pairs clients ask for.
            if len(result.pages) < 1024:
                result.pages[page_key] = body
        return body

    def instances_response(self, query_string: str) -> tuple[int, bytes]:
        """Status and body for ``GET /stats/v1/filters/instances?<query_string>``."""
        cached = self._instance_pages.get(query_string)
        if cached is not None:
            return cached
        try:
            query = parse_instances_query(query_string, self.products)
        except BadRequest as error:
            answer = 400, error_body(400, error.message)
        else:
            items = [item for item in self._instances_json if item["product"] in query.products]
            answer = 200, instances_page(items, query.page, query.per_page)
        if len(self._instance_pages) < _PARSED_CACHE_SIZE:
            self._instance_pages[query_string] = answer
        return answer

    def _parsed_query(self, query_string: str) -> UsageQuery | BadRequest:
        with self._lock:
            parsed = self._parsed.get(query_string)
            if parsed is not None:
                self._parsed.move_to_end(query_string)
                return parsed
        fresh: UsageQuery | BadRequest
        try:
            fresh = parse_usage_query(query_string, self.products, self.data.index_of_uuid)
        except BadRequest as error:
            # Cached: drop the traceback so the parser's frames are not kept alive.
            fresh = error.with_traceback(None)
        with self._lock:
            self._parsed[query_string] = fresh
            if len(self._parsed) > _PARSED_CACHE_SIZE:
                self._parsed.popitem(last=False)
        return fresh

    def _result(self, key: _CacheKey) -> _Result:
        with self._lock:
            result = self._results.get(key)
            if result is not None:
                self._results.move_to_end(key)
                return result
        product, low, high, grouping, instances = key
        rows, requests, size = self.data.aggregate(product, low, high, grouping, instances)
        result = _Result(rows, (requests, size), grouping)
        with self._lock:
            self._results[key] = result
            if len(self._results) > self.config.cache_size:
                self._results.popitem(last=False)
        return result


def _text(value: object) -> str:
    # Accept enum members (e.g. oxystats.GroupBy.DAY) as well as their strings.
    return str(getattr(value, "value", value))
