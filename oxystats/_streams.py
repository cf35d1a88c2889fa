"""Streams that fetch in the background while the consumer works, structured.

`open_page_stream` runs a producer in a task group that feeds a bounded anyio
memory object stream, and hands the receiving end to the body of an
``async with`` block: fetching goes on while the body works, memory is
bounded by the buffer, and leaving the block cancels whatever is in flight.
This is the shape trio's ``as_safe_channel`` and anyio's docs recommend
instead of an async generator that yields from inside a task group.

Errors come out as themselves: the producer's failure is raised by the
consumer's next read once the pages before it are consumed, and an
exception raised by the body leaves the block as itself, never wrapped in
an ``ExceptionGroup``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NoReturn, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from oxystats._models import FetchedPage, UsageRow
from oxystats._pipeline import CallProgress

__all__ = ["PageStream", "RowStream"]

T = TypeVar("T")


class _Outcome:
    """What the producer ended with."""

    __slots__ = ("failure",)

    def __init__(self) -> None:
        self.failure: Exception | None = None


class PageStream:
    """The pages of a usage query as they are fetched; use it with ``async for``.

    [`AsyncClient.stream_usage_pages`][oxystats.AsyncClient.stream_usage_pages]
    gives one, for the duration of its ``async with`` block.

    Raises:
        OxystatsError: When the fetching behind it failed, once every page
            fetched before the failure has been read.
    """

    def __init__(
        self,
        receive: MemoryObjectReceiveStream[FetchedPage],
        outcome: _Outcome,
        progress: CallProgress,
    ) -> None:
        self._receive = receive
        self._outcome = outcome
        self._progress = progress

    @property
    def requests(self) -> int:
        """Requests this stream's fetching has sent so far, retries included.

        Unlike [`AsyncClient.stats`][oxystats.AsyncClient.stats], it counts
        this stream's own only, whatever else the client does meanwhile.
        """
        return self._progress.requests

    def __aiter__(self) -> PageStream:
        return self

    async def __anext__(self) -> FetchedPage:
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            if self._outcome.failure is not None:
                raise self._outcome.failure from self._outcome.failure.__cause__
            raise StopAsyncIteration from None


class RowStream:
    """The rows of a usage query as their pages are fetched; use it with ``async for``.

    [`AsyncClient.stream_usage`][oxystats.AsyncClient.stream_usage] gives
    one, for the duration of its ``async with`` block. Rows are per window,
    as the API sends them (see
    [`AsyncClient.stream_usage`][oxystats.AsyncClient.stream_usage]).

    Raises:
        OxystatsError: When the fetching behind it failed, once every row
            fetched before the failure has been read.
    """

    def __init__(self, pages: PageStream) -> None:
        self._pages = pages
        self._rows: tuple[UsageRow, ...] = ()
        self._next = 0

    def __aiter__(self) -> RowStream:
        return self

    async def __anext__(self) -> UsageRow:
        while self._next >= len(self._rows):
            fetched = await self._pages.__anext__()
            self._rows, self._next = fetched.page.data, 0
        row = self._rows[self._next]
        self._next += 1
        return row


def _raise_alone(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Raise the one exception of ``group`` as itself, its own cause and context kept."""
    exc = group.exceptions[0]
    cause, context, suppress = exc.__cause__, exc.__context__, exc.__suppress_context__
    try:
        raise exc
    finally:
        # Raising here made the group its context; put back what it had.
        exc.__cause__, exc.__context__, exc.__suppress_context__ = cause, context, suppress
        del exc


@contextlib.asynccontextmanager
async def open_page_stream(
    produce: Callable[[MemoryObjectSendStream[FetchedPage]], Awaitable[None]],
    *,
    buffer: int,
    progress: CallProgress,
) -> AsyncIterator[PageStream]:
    """Run ``produce(send)`` in the background for the block; yield what it sends.

    ``produce`` sends pages and returns when done; its send stream is closed
    for it. The body gets a `PageStream` over them, which reports the
    requests counted in ``progress``.
    """
    send, receive = anyio.create_memory_object_stream[FetchedPage](buffer)
    outcome = _Outcome()

    async def run() -> None:
        async with send:
            try:
                await produce(send)
            except Exception as exc:
                # Kept for the consumer, in order: it reads the pages fetched
                # before the failure first. Raised here, it would cancel the
                # body and come out wrapped in an ExceptionGroup.
                outcome.failure = exc

    try:
        async with anyio.create_task_group() as group, receive:
            group.start_soon(run)
            try:
                yield PageStream(receive, outcome, progress)
            finally:
                # The block is done, early or not: nothing it did not read is wanted.
                group.cancel_scope.cancel()
    except BaseExceptionGroup as group_error:
        # Only the body's own exception can be in it (the producer keeps its own).
        if len(group_error.exceptions) == 1:
            _raise_alone(group_error)
        raise
