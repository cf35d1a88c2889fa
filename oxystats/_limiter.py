"""Waiting for a slot: the `Account` and each key's `RequestLimiter`, on an event loop.

The decisions are `oxystats._schedule`'s; this module adds the clock, the
sleeping and the waking. There is no background task. The head waiter of each
key sleeps until the instant its key and the account will next allow it (or
until something changes and it is woken up); whoever changes the state (a new
waiter, a finished request, a pause, a cancelled waiter) re-runs the hand-out
synchronously.

Everything here uses anyio primitives only, so it works on asyncio and on trio.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.lowlevel
import attrs

from oxystats._limits import DEFAULT_ACCOUNT_LIMIT, DEFAULT_KEY_LIMIT, Limit
from oxystats._schedule import KeyQueue, Scheduler, Start, Waiter
from oxystats._shared import (
    DEFAULT_LEASE,
    IN_FLIGHT_POLL,
    MAX_SLEEP,
    MIN_SLEEP,
    Gates,
    Grant,
    SharedLimits,
    StoreUnavailable,
    check_lease,
    check_name,
    check_redis_url,
    fingerprint,
    safe_url,
)

__all__ = ["Account"]


class _Run:
    """One event loop run, and how far its clock is ahead of ``time.monotonic()``.

    ``anyio.current_time()`` is the loop's clock: ``time.monotonic()`` on
    asyncio, but monotonic plus a random offset on trio, different for every
    ``trio.run``.
    """

    __slots__ = ("offset",)

    def __init__(self) -> None:
        self.offset = anyio.current_time() - time.monotonic()


_RUN: anyio.lowlevel.RunVar[_Run] = anyio.lowlevel.RunVar("oxystats._limiter.run")


def _current_run() -> _Run:
    run = _RUN.get(None)
    if run is None:
        run = _Run()
        _RUN.set(run)
    return run


class Account:
    """The account-wide limit, shared by every client created with it.

    All the API keys of one Oxylabs account share one account-wide limit (by
    default 100 requests per second and 100 in flight). Create one [`Account`][oxystats.Account]
    and pass it to every client of that account, and together they stay under
    it; a client given no account gets a private one.

    An [`Account`][oxystats.Account] holds no threads or tasks of its own and may be shared
    freely between tasks, clients and keys *of one event loop*.
    It is not thread-safe: do not share it between threads or between event
    loops running at the same time (doing so raises `RuntimeError`). Using it
    from one `anyio.run` after another is fine.

    With ``redis_url``, the account's limit and the limits of every key used
    with it are kept in Redis, and shared by every process, on any host, whose
    [`Account`][oxystats.Account] has the same ``redis_url`` and ``name``: four web workers
    and a cron job together stay under them, and two processes using the
    same API key together stay under that key's limit. Redis' own clock
    times every start. If Redis cannot be reached, the limits are kept in
    this process alone until it is back (one WARNING on the ``oxystats``
    logger says so); calls still complete. Needs ``pip install "oxystats[redis]"``.

    Args:
        limit: The account-wide limit.
        redis_url: A ``redis://``, ``rediss://`` or ``unix://`` URL; `None`
            keeps the limits in this process.
        name: Which account, in that Redis: 1-100 letters, digits, ``_ . : -``.
        lease: Seconds an in-flight place is held in Redis at most: a process
            that dies holding places frees them at the latest after this long.
            Keep it above the longest a request may take (the timeout).

    Raises:
        ValueError: An argument is out of range.
        TypeError: An argument has the wrong type.
        ImportError: ``redis_url`` was given but redis-py is not installed.
    """

    def __init__(
        self,
        limit: Limit = DEFAULT_ACCOUNT_LIMIT,
        *,
        redis_url: str | None = None,
        name: str = "default",
        lease: float = DEFAULT_LEASE,
    ) -> None:
        if not isinstance(limit, Limit):
            raise TypeError(f"Account limit must be an oxystats.Limit, not {type(limit).__name__}")
        name = check_name(name)
        lease = check_lease(lease)
        self._limit = limit
        self._name = name
        self._scheduler = Scheduler(limit)
        self._shared: SharedLimits | None = None
        if redis_url is not None:
            redis_url = check_redis_url(redis_url)
            try:
                import redis  # noqa: F401 (only to fail here, not at the first request)
            except ImportError as exc:
                raise ImportError(
                    "Account(redis_url=...) needs redis-py: pip install 'oxystats[redis]'"
                ) from exc
            self._shared = SharedLimits(redis_url, name, lease)
        # Wakes this process's waiters for Redis when one of its places frees.
        self._freed: tuple[object, anyio.Event] | None = None

    @property
    def limit(self) -> Limit:
        """The account-wide limit."""
        return self._limit

    @property
    def name(self) -> str:
        """Which account, in Redis."""
        return self._name

    @property
    def redis_url(self) -> str | None:
        """Where the limits are shared, without user name or password; `None`: in this process."""
        return None if self._shared is None else safe_url(self._shared.url)

    def _freed_event(self, run: object) -> anyio.Event:
        if self._freed is None or self._freed[0] is not run:
            self._freed = (run, anyio.Event())
        return self._freed[1]

    def _place_freed(self, run: object) -> None:
        self._freed_event(run).set()
        self._freed = (run, anyio.Event())

    def __repr__(self) -> str:
        if self._shared is None:
            return f"Account(limit={self._limit!r})"
        return f"Account(limit={self._limit!r}, redis_url={self.redis_url!r}, name={self._name!r})"


class _SharedWaiter:
    """A task waiting for Redis to grant its key a start."""

    __slots__ = ("asked", "entered", "gone", "ticket", "turn")

    def __init__(self, ticket: str, entered: float) -> None:
        self.ticket = ticket
        self.entered = entered
        self.gone = False  # no longer waiting (granted, or gave up)
        self.turn = anyio.Event()  # set when it becomes the first of its process
        self.asked = False  # whether its ticket may be in Redis' queue

    def place(self, now: float) -> tuple[str, float]:
        """Its ticket and how long it has waited, to join Redis' queue behind the first."""
        self.asked = True
        return self.ticket, now - self.entered


class _AsyncWaiter(Waiter):
    """A `Waiter` with the event its task sleeps on."""

    __slots__ = ("event",)

    def __init__(self, ticket: int) -> None:
        super().__init__(ticket)
        self.event = anyio.Event()  # set when granted, or to make it look again


class SlotTiming:
    """When one slot's request really went out, and when its answer came.

    `RequestLimiter.slot()` yields one. Passed to httpx as the ``"trace"``
    request extension, it notes the moment the request's headers start out
    (after any connection set-up) and moves the request's start in the
    limiter's logs from the grant to that moment: the server counts a request
    when it arrives, and a cold connection's handshake can delay it by tens of
    milliseconds while later requests on warm connections go out at once.
    It also notes when the answer's headers came in: the round trip tells the
    limiter how late the request can have arrived (see `oxystats._margin`).
    Without it, the grant time is kept, with the whole safety margin.
    """

    __slots__ = ("_on_sent", "answered_at", "granted_at", "sent_at")

    def __init__(self, granted_at: float, on_sent: Callable[[float], None]) -> None:
        self.granted_at = granted_at
        self.sent_at: float | None = None
        self.answered_at: float | None = None
        self._on_sent = on_sent

    async def trace(self, event: str, info: Any) -> None:
        """An httpx/httpcore ``trace`` extension: notes when the request left and was answered."""
        if self.sent_at is None:
            if event.endswith(".send_request_headers.started"):
                self.sent_at = anyio.current_time()
                self._on_sent(self.sent_at)
        elif self.answered_at is None and event.endswith(".receive_response_headers.complete"):
            self.answered_at = anyio.current_time()


@attrs.frozen
class LimiterStats:
    """A snapshot of one `RequestLimiter`'s counters."""

    requests: int  # slots granted
    waited: float  # seconds spent waiting for slots, summed over all requests
    max_wait: float  # the longest single wait, in seconds
    cancelled: int  # waits that were cancelled before getting a slot
    pauses: int  # calls to pause()
    in_flight: int  # slots held right now
    waiting: int  # tasks waiting for a slot right now
    safety_margin: float  # seconds a start may be counted after its send, at most


class RequestLimiter:
    """One API key's limiter, combined with its account's (internal to the client).

    ``async with limiter.slot():`` waits until both the key's limit and the
    account's allow a request, counts it against both at the same instant, and
    holds one in-flight place in both until the block exits.

    The safety margin is the account's (see `oxystats._margin`): it learns
    from the answers and the unexpected 429s of every key of the account.

    With an account shared through Redis, the grant comes from Redis (see
    `oxystats._shared`): this process's waiters for the key queue here, first
    come first served, and the first of them asks Redis, where the waiters of
    every process meet. ``key_fingerprint`` names the key there (see
    `oxystats._shared.fingerprint`); without one, the key is this limiter's
    alone.
    """

    def __init__(
        self,
        key_limit: Limit = DEFAULT_KEY_LIMIT,
        account: Account | None = None,
        *,
        key_fingerprint: str | None = None,
    ) -> None:
        if not isinstance(key_limit, Limit):
            raise TypeError(f"key_limit must be an oxystats.Limit, not {type(key_limit).__name__}")
        if account is None:
            account = Account()
        elif not isinstance(account, Account):
            raise TypeError(f"account must be an oxystats.Account, not {type(account).__name__}")
        self._account = account
        self._scheduler = account._scheduler
        self._key = KeyQueue(key_limit)
        self._requests = 0
        self._waited = 0.0
        self._max_wait = 0.0
        self._cancelled = 0
        self._pauses = 0
        shared = account._shared
        self._gates = (
            None
            if shared is None
            else shared.gates(
                key_fingerprint or fingerprint(os.urandom(16).hex()), key_limit, account.limit
            )
        )
        # This process's waiters for the key, first come first served; the first asks Redis.
        self._shared_queue: deque[_SharedWaiter] = deque()
        # A pause asked for while a slot is held, for Redis with the slot's release.
        self._pending_pause: list[float | None] = [None, None]

    @property
    def key_limit(self) -> Limit:
        """This key's limit."""
        return self._key.gate.limit

    @property
    def account(self) -> Account:
        """The account this key belongs to."""
        return self._account

    @property
    def stats(self) -> LimiterStats:
        """Counters for this key: requests, seconds waited, in flight, waiting."""
        return LimiterStats(
            requests=self._requests,
            waited=self._waited,
            max_wait=self._max_wait,
            cancelled=self._cancelled,
            pauses=self._pauses,
            in_flight=self._key.gate.in_flight,
            waiting=self._key.live + len(self._shared_queue),
            safety_margin=self._scheduler.margin.value_now(),
        )

    def __repr__(self) -> str:
        return f"RequestLimiter(key_limit={self.key_limit!r}, account={self._account!r})"

    def _adopt_run(self) -> None:
        run = _current_run()
        self._key.gate.rebase(run, run.offset, busy=self._key.live > 0)
        self._scheduler.rebase(run, run.offset)

    def _dispatch(self) -> None:
        for waiter in self._scheduler.dispatch(anyio.current_time()):
            assert isinstance(waiter, _AsyncWaiter)
            waiter.event.set()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[SlotTiming]:
        """Wait for a slot allowed by the key and the account, and hold it for the block.

        Cancellation is safe at any point: a task cancelled while waiting holds
        nothing afterwards, and one cancelled inside the block gives its
        in-flight place back.

        The block gets a `SlotTiming`; see there why and how it moves the
        request's start from the grant to the moment it was really sent.
        """
        granted_at, start, grant = await self._acquire()
        scheduler, key = self._scheduler, self._key
        timing = SlotTiming(granted_at, lambda sent: scheduler.sent(key, start, sent))
        try:
            yield timing
        finally:
            margin = None
            if timing.sent_at is not None and timing.answered_at is not None:
                margin = scheduler.answered(key, start, timing.sent_at, timing.answered_at)
            scheduler.release(key)
            if grant is not None:
                await self._give_back(grant, timing, margin)
            # A place is free: hand it to the next waiter of this or another key.
            self._dispatch()

    async def _acquire(self) -> tuple[float, Start, Grant | None]:
        shared = self._account._shared
        if shared is not None and shared.usable():
            shared_grant = await self._acquire_shared(shared)
            if shared_grant is not None:
                return shared_grant
        granted_at, start = await self._acquire_local()
        return granted_at, start, None

    def _margins(self, now: float, margin: float | None = None) -> tuple[float, float]:
        """The margin at ``now`` (or ``margin``), capped for the account's gate and the key's."""
        if margin is None:
            margin = self._scheduler.margin.value(now)
        return min(margin, self._scheduler.gate.cap), min(margin, self._key.gate.cap)

    async def _acquire_shared(self, shared: SharedLimits) -> tuple[float, Start, Grant] | None:
        """Wait for Redis to grant a start; `None` if Redis is unreachable (use local limits).

        This process's waiters for the key queue here, first come first
        served; the first asks Redis, and puts the second in Redis' queue too.
        Every ask first reserves the start in this process's own gates (given
        back if Redis says no): this process's starts must allow it too, they
        are all Redis knows of them after a restart that emptied it, and a
        waiter that went local while Redis was away must not take the same place.
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        self._adopt_run()
        run = _current_run()
        gates = self._gates
        assert gates is not None
        scheduler, key, queue = self._scheduler, self._key, self._shared_queue
        me = _SharedWaiter(shared.new_ticket(gates), anyio.current_time())
        queue.append(me)
        granted: tuple[float, Start, Grant] | None = None
        try:
            try:
                while queue[0] is not me:
                    await me.turn.wait()
                    me.turn = anyio.Event()
                while granted is None:
                    now = anyio.current_time()
                    wait = max(key.gate.ready_at(), scheduler.gate.ready_at()) - now
                    if wait <= 0:
                        following = queue[1] if len(queue) > 1 else None
                        then = None if following is None else following.place(now)
                        me.asked = True
                        reserved = scheduler.take(key, now)
                        try:
                            answer = await shared.acquire(
                                gates,
                                me.ticket,
                                waited=now - me.entered,
                                margins=self._margins(now),
                                then=then,
                            )
                        except BaseException:
                            scheduler.untake(key, reserved)
                            raise
                        if answer.grant is not None:
                            granted = (anyio.current_time(), reserved, answer.grant)
                        else:
                            scheduler.untake(key, reserved)
                        if following is not None and following.gone:
                            # It gave up while this ask put its ticket in the queue.
                            with anyio.CancelScope(shield=True):
                                await self._forget(shared, gates, following.ticket)
                        if granted is not None:
                            break
                        self._dispatch()
                        wait = max(answer.again_in, MIN_SLEEP)
                    if not math.isfinite(wait):
                        wait = IN_FLIGHT_POLL
                    with anyio.move_on_after(min(max(wait, 0.0), MAX_SLEEP)):
                        await self._account._freed_event(run).wait()
            finally:
                head = queue[0] is me
                queue.remove(me)
                me.gone = True
                if head and queue:
                    queue[0].turn.set()
        except StoreUnavailable:
            return None
        except BaseException:
            self._cancelled += 1
            with anyio.CancelScope(shield=True):
                if granted is not None:
                    scheduler.untake(key, granted[1])
                    await self._give_back(granted[2], None, None)
                    self._dispatch()
                elif me.asked:
                    await self._forget(shared, gates, me.ticket)
            raise
        self._count_wait(granted[0] - me.entered)
        return granted

    def _count_wait(self, wait: float) -> None:
        """A waiter was granted after ``wait`` seconds: count it in `stats`."""
        self._requests += 1
        self._waited += wait
        self._max_wait = max(self._max_wait, wait)

    async def _forget(self, shared: SharedLimits, gates: Gates, ticket: str) -> None:
        """Drop a waiter's ticket from Redis' queue (it lapses by itself if Redis is away)."""
        if shared.usable():
            with contextlib.suppress(StoreUnavailable):
                await shared.finish(gates, "abandon", ticket)

    async def _give_back(
        self, grant: Grant, timing: SlotTiming | None, margin: float | None
    ) -> None:
        """Give Redis back a grant: its in-flight places, and its starts moved or forgotten."""
        shared, gates = self._account._shared, self._gates
        assert shared is not None
        assert gates is not None
        pauses = (self._pending_pause[0], self._pending_pause[1])
        self._pending_pause = [None, None]
        now = anyio.current_time()
        starts = None
        if timing is not None and timing.sent_at is not None:
            # Counted from the send, on Redis' clock: the grant time plus the time
            # from the ask to the send (more than from the grant: safe), plus what
            # the answer left of the margin.
            after = max(0.0, timing.sent_at - grant.asked_at)
            account_margin, key_margin = self._margins(now, margin)
            starts = (
                grant.granted_at + after + account_margin,
                grant.granted_at + after + key_margin,
            )
        # Without a timing the request never went out: forget its starts too.
        mode = "untake" if timing is None else "release"
        # If Redis is away, the lease lapses by itself and the starts age out.
        if shared.usable():
            with anyio.CancelScope(shield=True), contextlib.suppress(StoreUnavailable):
                await shared.finish(
                    gates, mode, grant.id, starts=starts, pauses=pauses, margins=self._margins(now)
                )
        self._account._place_freed(_current_run())

    async def _acquire_local(self) -> tuple[float, Start]:
        await anyio.lowlevel.checkpoint_if_cancelled()
        self._adopt_run()
        scheduler, key = self._scheduler, self._key
        entered = anyio.current_time()
        waiter = _AsyncWaiter(scheduler.next_ticket())
        scheduler.enqueue(key, waiter)
        try:
            self._dispatch()
            while waiter.granted_at is None:
                waiter.sleeping_until = waiter.wake_at
                with anyio.CancelScope(deadline=waiter.wake_at):
                    await waiter.event.wait()
                waiter.sleeping_until = -math.inf
                if waiter.granted_at is None:
                    # Woken by the clock or poked: events cannot be cleared, so
                    # take a fresh one, then look again.
                    waiter.event = anyio.Event()
                    self._dispatch()
        except BaseException:
            if waiter.start is not None:
                # Granted, but cancelled before it could run: the request never
                # went out, so give back the place and the start time.
                scheduler.untake(key, waiter.start)
            else:
                scheduler.abandon(key, waiter)
            self._cancelled += 1
            # Whatever it was blocking (the head of the queue, or capacity) moves on.
            self._dispatch()
            raise
        self._count_wait(waiter.granted_at - entered)
        assert waiter.start is not None
        return waiter.granted_at, waiter.start

    def note_refusal(self, timing: SlotTiming) -> None:
        """The server refused (429) the request sent in the slot ``timing`` describes.

        The client's own log allowed that request, so the path delays arrivals
        more than the safety margin allows for: the margin grows (once per
        event, see `oxystats._margin.SafetyMargin.refused`).
        """
        self._adopt_run()
        sent = timing.granted_at if timing.sent_at is None else timing.sent_at
        self._scheduler.margin.refused(sent, anyio.current_time())

    def pause(self, seconds: float, *, account_wide: bool = False) -> None:
        """Start no new request for this key (or the whole account) for ``seconds``.

        Call it after a 429 with ``Retry-After``. Requests already in flight are
        not affected. A later pause extends an earlier one, never shortens it.
        When the pause ends, requests resume spread out at the limit's rate, not
        as a burst.
        """
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not (math.isfinite(seconds) and seconds >= 0)
        ):
            raise ValueError(f"pause needs a finite number of seconds >= 0, got {seconds!r}")
        self._adopt_run()
        gate = self._scheduler.gate if account_wide else self._key.gate
        now = anyio.current_time()
        self._scheduler.pause(gate, now + seconds, now)
        # In Redis too, with the release of the slot being held (after a 429).
        which = 1 if account_wide else 0
        self._pending_pause[which] = max(self._pending_pause[which] or 0.0, float(seconds))
        self._pauses += 1
        self._dispatch()
