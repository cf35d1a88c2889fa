"""Limits shared through Redis by every process, on any host, of one account.

`SharedLimits` is what an `Account` created with ``redis_url=`` holds: the
connection, the scripts of `oxystats._shared_scripts`, and whether Redis is
reachable. redis-py's blocking client runs in a worker thread through
``anyio.to_thread.run_sync``: that works on asyncio and on trio alike, and a
call, once started, always completes (its thread is never abandoned), so a
grant that arrives for a caller cancelled meanwhile is seen, and given back.

When Redis cannot be reached (down, restarting, failing over, a network
cut), the limiter falls back to the account's limits kept in this process
alone; one WARNING says so, and Redis is tried again now and then (after 1 s,
then up to every 8 s) until it answers. A Redis that restarted empty has
forgotten the scripts: redis-py's `Script` loads them again on ``NOSCRIPT``.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import math
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from oxystats._events import logger
from oxystats._limits import Limit
from oxystats._shared_scripts import ACQUIRE, FINISH

__all__: list[str] = []

T = TypeVar("T")

_FINGERPRINT_KEY = b"oxystats shared limits, key fingerprint, v1"
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")

CONNECT_TIMEOUT = 0.5
"""Seconds to open a connection to Redis before it counts as unreachable."""

CALL_TIMEOUT = 2.0
"""Seconds for one script call (a call on a healthy Redis takes well under 1 ms)."""

RETRY_FIRST, RETRY_MAX = 1.0, 8.0
"""Seconds before Redis is tried again after a failure: the first wait, and the longest."""

TICKET_LIFETIME = 2.0
"""Seconds a waiting ticket lives in Redis without its waiter asking again."""

MAX_SLEEP = 0.5
"""The longest a waiter sleeps between two asks (its ticket must not lapse)."""

MIN_SLEEP = 0.001
"""The shortest a waiter sleeps before asking again."""

IN_FLIGHT_POLL = 0.01
"""Seconds between asks while every in-flight place is taken (by other processes)."""

DEFAULT_LEASE = 60.0
"""Seconds an in-flight place is held at most, if its holder never gives it back."""


def fingerprint(api_key: str) -> str:
    """A keyed fingerprint of an API key: names the key in Redis, never reveals it."""
    digest = hmac.new(_FINGERPRINT_KEY, api_key.encode(), hashlib.sha256).hexdigest()
    return digest[:32]


def check_name(name: object) -> str:
    """An account name: 1-100 letters, digits, ``_ . : -`` (it is part of Redis key names)."""
    if not isinstance(name, str):
        raise TypeError(f"Account name must be a string, not {type(name).__name__}")
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"Account name must be 1-100 letters, digits, '_', '.', ':' or '-', got {name!r}"
        )
    return name


def check_redis_url(url: object) -> str:
    """A ``redis://``, ``rediss://`` or ``unix://`` URL."""
    if not isinstance(url, str):
        raise TypeError(f"redis_url must be a string, not {type(url).__name__}")
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"redis_url must start with redis://, rediss:// or unix://, got {safe_url(url)!r}"
        )
    return url


def check_lease(lease: object) -> float:
    """A finite number of seconds above 0."""
    if isinstance(lease, bool) or not isinstance(lease, int | float):
        raise TypeError(f"lease must be a number of seconds, not {type(lease).__name__}")
    if not (math.isfinite(lease) and lease > 0):
        raise ValueError(f"lease must be a finite number of seconds above 0, got {lease!r}")
    return float(lease)


def safe_url(url: str) -> str:
    """``url`` without user name or password: fit for a log line or a repr."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class StoreUnavailable(Exception):
    """Redis could not be reached, or refused the call: use the local limits."""


class Grant:
    """An in-flight place and a start that Redis granted, until they are given back."""

    __slots__ = ("asked_at", "granted_at", "id")

    def __init__(self, grant_id: str, granted_at: float, asked_at: float) -> None:
        self.id = grant_id
        self.granted_at = granted_at  # on Redis' clock
        self.asked_at = asked_at  # on the event loop's clock, before the call


class Answer:
    """What Redis said to one ask: a grant, or when to ask again."""

    __slots__ = ("again_in", "grant")

    def __init__(self, grant: Grant | None, again_in: float) -> None:
        self.grant = grant
        self.again_in = again_in  # seconds, if not granted (inf: when a place frees)


class Gates:
    """One key's gate and its account's, as the scripts need them (keys, limits, margins)."""

    __slots__ = ("account", "fingerprint", "key", "keys")

    def __init__(self, prefix: str, fingerprint: str, key: Limit, account: Limit) -> None:
        self.fingerprint = fingerprint
        self.key = key
        self.account = account
        self.keys = (
            f"{prefix}a:log",
            f"{prefix}a:lease",
            f"{prefix}a:meta",
            f"{prefix}k:{fingerprint}:log",
            f"{prefix}k:{fingerprint}:lease",
            f"{prefix}k:{fingerprint}:meta",
            f"{prefix}queue",
            f"{prefix}queue:exp",
            f"{prefix}ready",
        )


def _number(value: Any) -> float:
    return float(value.decode() if isinstance(value, bytes) else value)


class SharedLimits:
    """An account's limits in Redis, with a fallback to the local ones when it is away.

    Thread-safe: its Redis calls run in worker threads, and its state is read
    and written by the event loop only.
    """

    def __init__(self, url: str, name: str, lease: float) -> None:
        self.url = url
        self.name = name
        self.lease = lease
        # One hash tag for every key of the account: one Redis Cluster slot.
        self.prefix = f"oxystats:{{{name}}}:"
        self._acquire: Callable[..., Any] | None = None
        self._finish: Callable[..., Any] | None = None
        self._connect_lock = threading.Lock()
        self._ids = itertools.count()
        self._process = f"{os.getpid()}-{os.urandom(6).hex()}"
        self.down_since: float | None = None  # time.monotonic() of the failure
        self._retry_at = -math.inf
        self._retry_wait = RETRY_FIRST
        self.calls = 0  # script calls made (Redis round trips)

    # -- connection and availability --------------------------------------------

    def _scripts(self) -> tuple[Callable[..., Any], Callable[..., Any]]:
        with self._connect_lock:
            if self._acquire is None or self._finish is None:
                import redis
                import redis.backoff
                import redis.retry

                client = redis.Redis.from_url(
                    self.url,
                    socket_connect_timeout=CONNECT_TIMEOUT,
                    socket_timeout=CALL_TIMEOUT,
                    # One quick retry: a pooled connection to a Redis that has
                    # restarted fails once, then reconnects.
                    retry=redis.retry.Retry(redis.backoff.NoBackoff(), 1),
                    client_name="oxystats",
                )
                self._acquire = client.register_script(ACQUIRE)
                self._finish = client.register_script(FINISH)
            return self._acquire, self._finish

    def usable(self) -> bool:
        """Whether to ask Redis now: it answered last time, or it is time to try again."""
        return self.down_since is None or time.monotonic() >= self._retry_at

    def _failed(self, error: BaseException) -> None:
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
            self._retry_wait = RETRY_FIRST
            logger.warning(
                "shared limits: Redis at %s is unreachable (%s); until it is back, "
                "account %r keeps its limits in this process only",
                safe_url(self.url),
                type(error).__name__,
                self.name,
                extra={
                    "redis_url": safe_url(self.url),
                    "account": self.name,
                    "shared_limits": "unreachable",
                },
            )
        elif now >= self._retry_at:
            # A try after the wait failed: wait longer. (Calls that were already
            # under way when Redis went away fail too; they change nothing.)
            self._retry_wait = min(RETRY_MAX, self._retry_wait * 2)
        else:
            return
        self._retry_at = now + self._retry_wait

    def _answered(self) -> None:
        if self.down_since is not None:
            logger.warning(
                "shared limits: Redis at %s is back after %.1f s; account %r shares its "
                "limits again",
                safe_url(self.url),
                time.monotonic() - self.down_since,
                self.name,
                extra={
                    "redis_url": safe_url(self.url),
                    "account": self.name,
                    "shared_limits": "back",
                },
            )
            self.down_since = None

    async def _call(self, work: Callable[[], T]) -> T:
        """Run one Redis call in a worker thread; it completes even if the caller is cancelled."""
        import redis

        try:
            result = await anyio.to_thread.run_sync(work, abandon_on_cancel=False)
        except (redis.RedisError, OSError) as error:
            self._failed(error)
            raise StoreUnavailable(type(error).__name__) from None
        self.calls += 1
        self._answered()
        return result

    # -- the calls ------------------------------------------------------------------

    def gates(self, key_fingerprint: str, key: Limit, account: Limit) -> Gates:
        """The Redis keys and limits of one key of this account."""
        return Gates(self.prefix, key_fingerprint, key, account)

    def new_ticket(self, gates: Gates) -> str:
        """A ticket for one waiter: its key's fingerprint, this process, a number."""
        return f"{gates.fingerprint}|{self._process}|{next(self._ids)}"

    def _keep(self, gates: Gates) -> float:
        return max(gates.key.window, gates.account.window) + self.lease + 60.0

    async def acquire(
        self,
        gates: Gates,
        ticket: str,
        *,
        waited: float,
        margins: tuple[float, float],
        then: tuple[str, float] | None = None,
    ) -> Answer:
        """Ask once for a start and an in-flight place for ``gates``' key.

        Args:
            gates: The key and its account.
            ticket: The waiter's ticket (the same for every ask of one wait).
            waited: Seconds the waiter has waited already: its place in the queue.
            margins: The safety margins for the account's gate and the key's.
            then: The ticket of the waiter behind it in this process, and how
                long that one has waited: it joins the queue in Redis too.

        Raises:
            StoreUnavailable: Redis could not be asked.
        """
        grant_id = f"{self._process}-{next(self._ids)}"
        key, account = gates.key, gates.account
        args = (
            ticket,
            repr(waited),
            gates.fingerprint,
            repr(margins[0]),
            repr(margins[1]),
            repr(account.window),
            account.burst,
            account.in_flight,
            repr(key.window),
            key.burst,
            key.in_flight,
            repr(self.lease),
            grant_id,
            repr(TICKET_LIFETIME),
            repr(self._keep(gates)),
            "" if then is None else then[0],
            "0" if then is None else repr(then[1]),
        )
        asked_at = anyio.current_time()

        def ask() -> Any:
            script, _ = self._scripts()
            return script(keys=gates.keys, args=args)

        granted, redis_now, again_at = await self._call(ask)
        now = _number(redis_now)
        if int(granted):
            return Answer(Grant(grant_id, now, asked_at), 0.0)
        return Answer(None, _number(again_at) - now)

    async def finish(
        self,
        gates: Gates,
        mode: str,
        ident: str,
        *,
        starts: tuple[float, float] | None = None,
        pauses: tuple[float | None, float | None] = (None, None),
        margins: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        """Give back a grant (``release`` or ``untake``) or a waiter's ticket (``abandon``).

        Args:
            gates: The key and its account.
            mode: ``release`` (the request went out: frees its places, moves its
                starts to ``starts``), ``untake`` (it never went out: forgets its
                starts too) or ``abandon`` (a waiter gave up: drops its ticket).
            ident: The grant id, or the ticket.
            starts: Where to count the request now, on the account's gate and
                the key's (Redis' clock); `None` leaves them.
            pauses: Seconds to pause the key and the account, or `None`.
            margins: The margins a pause counts its synthetic starts with.

        Raises:
            StoreUnavailable: Redis could not be asked.
        """
        key, account = gates.key, gates.account

        def text(value: float | None) -> str:
            return "" if value is None else repr(value)

        args = (
            mode,
            ident,
            gates.fingerprint,
            text(None if starts is None else starts[0]),
            text(None if starts is None else starts[1]),
            text(pauses[0]),
            text(pauses[1]),
            repr(account.rate),
            account.burst,
            repr(key.rate),
            key.burst,
            repr(margins[0]),
            repr(margins[1]),
            repr(account.window),
            account.in_flight,
            repr(key.window),
            key.in_flight,
        )

        def call() -> Any:
            _, script = self._scripts()
            return script(keys=gates.keys, args=args)

        await self._call(call)
