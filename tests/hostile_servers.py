"""Servers written to misbehave, and the tools to judge what a client makes of them.

None of this is the oxystats emulator: these servers exist to lie, stall and leak.

- `FakeApi`: an `httpx.MockTransport` handler that answers the Dashboard API's
  two endpoints honestly from a small in-memory dataset, unless a *lie*
  rewrites the answer. It records when every request was sent.
- `RawServer`: an HTTP/1.1 server on 127.0.0.1, one thread per connection,
  whose replies the test writes byte by byte (trickles, hangs, lying headers).
  It stops, and closes what is still open, when its ``with`` block ends.
- `KEY` and `key_leaks`: an API key full of characters JSON escapes, and a
  walker that looks for it in an exception, its chain, its pickle and in
  anything they hold.
- `guarded`: turns a runaway client (an event loop frozen by synchronous
  work, memory filled in C) into a test failure instead of a frozen or
  killed test run.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import math
import resource
import select
import signal
import socket
import threading
import time
import traceback
import types
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeAlias, TypeVar

import anyio
import attrs
import httpx
import pytest

import oxystats

# --- the key ----------------------------------------------------------------------

KEY_CORE = "K3yC0r3x7Qz"
"""A run of letters and digits found only inside `KEY`: any echo of the key that
is not escaped character by character contains it (raw, repr, JSON, percent)."""

KEY = f'oxy/{KEY_CORE}"<&>\\+=/end'
"""Printable ASCII without whitespace (a valid key), full of what JSON escapes."""

KEY_UNICODE_ESCAPED = "".join(f"\\u{ord(char):04x}" for char in KEY)
"""The key with every character written as a JSON ``\\uXXXX`` escape."""


def json_forms(key: str) -> dict[str, str]:
    """How JSON encoders write ``key`` inside a string (without the quotes)."""
    standard = json.dumps(key)[1:-1]  # \" and \\
    return {
        "json": standard,
        "json-slash": standard.replace("/", "\\/"),  # PHP's json_encode
        "json-html": (  # Go's encoding/json
            standard.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        ),
    }


def key_in(text: str) -> bool:
    """Whether ``text`` holds the key in any form."""
    return KEY_CORE in text or KEY_UNICODE_ESCAPED in text


def key_leaks(root: object, path: str = "exc") -> list[str]:
    """Every place under ``root`` where the key shows, as readable paths.

    Walks an exception's message, repr, args, attributes, ``__cause__`` and
    ``__context__`` (and exception groups, notes, httpx requests and their
    headers, httpx responses), strings, bytes and containers, and the fields
    of any object reached. Tracebacks are not walked: frames hold the key in
    the client's own variables, which is not a leak.
    """
    found: list[str] = []
    seen: set[int] = set()

    def check(text: str, where: str) -> None:
        if key_in(text):
            found.append(where)

    def visit(obj: object, where: str, depth: int) -> None:
        if obj is None or isinstance(obj, bool | int | float | date | timedelta):
            return
        if isinstance(obj, str):
            check(obj, where)
            return
        if isinstance(obj, bytes | bytearray):
            check(bytes(obj).decode("latin-1"), where)
            return
        skipped = (
            type,
            types.ModuleType,
            types.TracebackType,
            types.FrameType,
            types.FunctionType,
            types.BuiltinFunctionType,
            types.MethodType,
        )
        if depth > 10 or id(obj) in seen or isinstance(obj, skipped):
            return
        seen.add(id(obj))
        with contextlib.suppress(Exception):
            check(repr(obj), f"repr({where})")
        if isinstance(obj, BaseException):
            with contextlib.suppress(Exception):
                check(str(obj), f"str({where})")
            visit(obj.args, f"{where}.args", depth + 1)
            visit(obj.__cause__, f"{where}.__cause__", depth + 1)
            visit(obj.__context__, f"{where}.__context__", depth + 1)
            visit(getattr(obj, "__notes__", None), f"{where}.__notes__", depth + 1)
            if isinstance(obj, BaseExceptionGroup):
                visit(obj.exceptions, f"{where}.exceptions", depth + 1)
            if isinstance(obj, httpx.RequestError):
                try:
                    request: httpx.Request | None = obj.request
                except RuntimeError:  # httpx: ".request" was never set
                    request = None
                visit(request, f"{where}.request", depth + 1)
            if isinstance(obj, httpx.HTTPStatusError):
                visit(obj.response, f"{where}.response", depth + 1)
        if isinstance(obj, httpx.Request):
            visit(obj.headers.raw, f"{where}.headers", depth + 1)
            visit(str(obj.url), f"{where}.url", depth + 1)
        if isinstance(obj, httpx.Response):
            visit(obj.headers.raw, f"{where}.headers", depth + 1)
            with contextlib.suppress(RuntimeError):
                visit(obj.request, f"{where}.request", depth + 1)
        if isinstance(obj, httpx.Headers):
            visit(obj.raw, f"{where}.raw", depth + 1)
        if isinstance(obj, dict):
            for name, value in list(obj.items()):
                visit(name, f"{where}[{name!r}]", depth + 1)
                visit(value, f"{where}[{name!r}]", depth + 1)
        elif isinstance(obj, list | tuple | set | frozenset):
            for index, item in enumerate(list(obj)):
                visit(item, f"{where}[{index}]", depth + 1)
        # Slotted attrs classes have no vars(): walk their fields.
        for field in getattr(type(obj), "__attrs_attrs__", ()):
            visit(getattr(obj, field.name, None), f"{where}.{field.name}", depth + 1)
        with contextlib.suppress(TypeError):
            for name, value in list(vars(obj).items()):
                visit(value, f"{where}.{name}", depth + 1)

    visit(root, path, 0)
    return found


def log_leaks(records: Sequence[logging.LogRecord]) -> list[str]:
    """Every log record that shows the key: its message, traceback, args or extras."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    found: list[str] = []
    for index, record in enumerate(records):
        where = f"log[{index}] {record.name} {record.levelname}"
        if key_in(formatter.format(record)):
            found.append(f"{where}: {record.getMessage()[:200]!r}")
        found.extend(key_leaks(vars(record), where))
    return found


# --- a fake Dashboard API ------------------------------------------------------------

Doc: TypeAlias = dict[str, Any]
"""A decoded JSON page."""

Answer: TypeAlias = Doc | bytes | httpx.Response
"""What a lie answers: a page to encode, raw body bytes (a 200), or a whole response."""

Lie: TypeAlias = Callable[["Asked", Doc, Callable[[int], Doc]], Answer]
"""``lie(asked, honest_page, honest_page_number)`` -> the answer actually sent."""

FAKE_BASE_URL = "https://fake-api.invalid"
"""Where `FakeApi` clients send requests: the mock transport takes them all."""

USAGE_PATH = "/stats/v1/usage"
INSTANCES_PATH = "/stats/v1/filters/instances"


@attrs.frozen
class Cell:
    """Usage of one instance on one target on one UTC day."""

    day: date
    target: str
    instance: str
    requests: int
    traffic_bytes: int

    def key(self, group: str) -> str:
        """This cell's key under one grouping."""
        if group == "DAY":
            return self.day.isoformat()
        return self.target if group == "TARGET" else self.instance


@attrs.frozen
class Asked:
    """What one request asked for, read from its URL."""

    path: str
    page: int
    per_page: int
    date_from: datetime | None
    date_to: datetime | None
    grouping: tuple[str, ...]
    instances: tuple[str, ...]
    products: tuple[str, ...]

    @classmethod
    def parse(cls, url: httpx.URL) -> Asked:
        """Read a request URL of either endpoint."""
        params = url.params

        def moment(name: str) -> datetime | None:
            text = params.get(name)
            return None if text is None else datetime.fromisoformat(text)

        return cls(
            path=url.path,
            page=int(params.get("page", "1")),
            per_page=int(params.get("per_page", "100")),
            date_from=moment("date_from"),
            date_to=moment("date_to"),
            grouping=tuple(params.get_list("group_by[]")),
            instances=tuple(params.get_list("instances[]")),
            products=tuple(params.get_list("products[]")),
        )


def total_pages(total_items: int, per_page: int) -> int:
    """Pages for ``total_items``: at least 1, as the vendor documents."""
    return max(1, math.ceil(total_items / per_page))


@functools.cache
def standard_cells() -> tuple[Cell, ...]:
    """Three months of 250 targets on two instances, about one cell in nine filled.

    A TARGET-grouped window of 31 days has all 250 targets: three pages (100, 100, 50).
    """
    cells = []
    first = date(2025, 1, 1)
    for day_index in range(90):
        day = first + timedelta(days=day_index)
        for target in range(250):
            for instance in range(2):
                if (day_index + target + instance) % 9 == 0:
                    requests = 1 + (day_index * 7 + target * 3 + instance) % 50
                    cells.append(
                        Cell(
                            day,
                            f"t{target:03d}.example",
                            f"inst-{instance}",
                            requests,
                            requests * 1000 + target,
                        )
                    )
    return tuple(cells)


def standard_instances(count: int = 150) -> list[dict[str, str]]:
    """``count`` HB instances: two pages of the instance list by default."""
    return [
        {"uuid": f"inst-{index}", "name": f"instance {index}", "status": "enabled", "product": "HB"}
        for index in range(count)
    ]


class FakeApi:
    """A Dashboard API as an `httpx.MockTransport` handler: honest, unless ``lie`` says otherwise.

    Args:
        cells: The usage it knows.
        instances: The instance list it serves.
        lie: Rewrites each honest answer (see `Lie`); `None`: always honest.
        delay: Seconds (or a function of the request giving them) to wait
            before answering; cancellable, as a real network wait is.
    """

    def __init__(
        self,
        cells: Sequence[Cell] | None = None,
        instances: Sequence[dict[str, str]] | None = None,
        *,
        lie: Lie | None = None,
        delay: float | Callable[[Asked], float] = 0.0,
    ) -> None:
        self.cells = list(standard_cells() if cells is None else cells)
        self.instance_list = list(standard_instances() if instances is None else instances)
        self.lie = lie
        self.delay = delay
        self.sent: list[tuple[float, httpx.Request]] = []
        self._results: dict[Asked, tuple[list[Doc], Doc]] = {}

    @property
    def requests(self) -> list[httpx.Request]:
        """Every request received, in order."""
        return [request for _, request in self.sent]

    def usage_result(self, asked: Asked) -> tuple[list[Doc], Doc]:
        """Every row (sorted by key) and the totals of a usage query, over all pages."""
        whole = attrs.evolve(asked, page=1)
        if whole not in self._results:
            assert asked.date_from is not None
            assert asked.date_to is not None
            sums: dict[tuple[str, ...], list[int]] = {}
            for cell in self.cells:
                moment = datetime(cell.day.year, cell.day.month, cell.day.day, 12, tzinfo=UTC)
                if not asked.date_from <= moment <= asked.date_to:
                    continue
                if asked.instances and cell.instance not in asked.instances:
                    continue
                key = tuple(cell.key(group) for group in asked.grouping)
                total = sums.setdefault(key, [0, 0])
                total[0] += cell.requests
                total[1] += cell.traffic_bytes
            rows: list[Doc] = [
                {"grouped_by": list(key), "requests": value[0], "traffic_bytes": value[1]}
                for key, value in sorted(sums.items())
            ]
            totals: Doc = {
                "requests": sum(value[0] for value in sums.values()),
                "traffic_bytes": sum(value[1] for value in sums.values()),
            }
            self._results[whole] = (rows, totals)
        return self._results[whole]

    def honest(self, asked: Asked) -> Doc:
        """The honest answer to ``asked``, a fresh copy the caller may change."""
        first = (asked.page - 1) * asked.per_page
        last = asked.page * asked.per_page
        if asked.path == INSTANCES_PATH:
            items = [
                item
                for item in self.instance_list
                if not asked.products or item["product"] in asked.products
            ]
            return copy.deepcopy(
                {
                    "data": items[first:last],
                    "meta": {"pagination": self._pagination(asked, len(items))},
                }
            )
        rows, totals = self.usage_result(asked)
        return copy.deepcopy(
            {
                "data": rows[first:last],
                "totals": totals,
                "meta": {
                    "pagination": self._pagination(asked, len(rows)),
                    "grouping": list(asked.grouping),
                },
            }
        )

    @staticmethod
    def _pagination(asked: Asked, total_items: int) -> dict[str, int]:
        return {
            "page": asked.page,
            "per_page": asked.per_page,
            "total_items": total_items,
            "total_pages": total_pages(total_items, asked.per_page),
        }

    def answer(self, asked: Asked) -> Answer:
        """What is sent for ``asked``: the honest page, or what the lie makes of it."""
        honest = self.honest(asked)
        if self.lie is None:
            return honest
        return self.lie(asked, honest, lambda page: self.honest(attrs.evolve(asked, page=page)))

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((time.monotonic(), request))
        asked = Asked.parse(request.url)
        delay = self.delay(asked) if callable(self.delay) else self.delay
        if delay:
            await anyio.sleep(delay)
        answer = self.answer(asked)
        if isinstance(answer, httpx.Response):
            return answer
        if isinstance(answer, bytes):
            return httpx.Response(200, content=answer)
        return httpx.Response(200, json=answer)

    def client(self, **options: Any) -> oxystats.AsyncClient:
        """An `oxystats.AsyncClient` whose requests all come here (``options`` are its own).

        Its base URL is in ``.invalid``, which never resolves: nothing can leave the process.
        """
        http = httpx.AsyncClient(transport=httpx.MockTransport(self))
        options.setdefault("base_url", FAKE_BASE_URL)
        return oxystats.AsyncClient(KEY, http_client=http, **options)


# --- a raw HTTP server ---------------------------------------------------------------


class Exchange:
    """One request on one connection of a `RawServer`, and the means to answer it."""

    def __init__(self, server: RawServer, sock: socket.socket, head: bytes) -> None:
        self.server = server
        self.sock = sock
        self.arrived = time.monotonic()
        lines = head.decode("latin-1").split("\r\n")
        self.method, self.target, _ = lines[0].split(" ", 2)
        self.headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:] if line)
        }
        self.gone = False
        self.finished = threading.Event()
        """Set when the handler has returned and the connection is closed."""

    @property
    def url(self) -> httpx.URL:
        """The URL asked for."""
        return httpx.URL(f"http://127.0.0.1{self.target}")

    @property
    def key(self) -> str:
        """The bearer key the request carried."""
        return self.headers.get("authorization", "").removeprefix("Bearer ")

    def send(self, data: bytes) -> bool:
        """Write ``data``; `False` once the client has gone."""
        if self.gone or self.server.stopping.is_set():
            self.gone = True
            return False
        try:
            self.sock.sendall(data)
        except OSError:
            self.gone = True
            return False
        with self.server.lock:
            self.server.sent_bytes += len(data)
        return True

    def head(self, status: int, headers: Sequence[tuple[str, str]] = (), reason: str = "") -> bool:
        """Write a status line and headers (``Connection: close`` added)."""
        lines = [f"HTTP/1.1 {status} {reason or 'Whatever'}"]
        lines.extend(f"{name}: {value}" for name, value in headers)
        lines.append("Connection: close")
        return self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def respond(
        self,
        status: int,
        body: bytes,
        headers: Sequence[tuple[str, str]] = (),
        content_type: str = "application/json",
    ) -> None:
        """A complete response with a true Content-Length."""
        all_headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        if self.head(status, [*all_headers, *headers]):
            self.send(body)

    def hang(self) -> None:
        """Say nothing more until the client leaves or the server stops."""
        while not self.server.stopping.is_set():
            readable, _, _ = select.select([self.sock], [], [], 0.02)
            if readable:
                try:
                    if not self.sock.recv(65536):
                        break
                except OSError:
                    break
        self.gone = True

    def trickle(self, data: bytes, interval: float) -> None:
        """Write ``data`` one byte every ``interval`` seconds, until done or the client leaves."""
        for index in range(len(data)):
            if index and self.server.stopping.wait(interval):
                return
            if not self.send(data[index : index + 1]):
                return


Handler: TypeAlias = Callable[[Exchange], None]
"""Answers one request of a `RawServer` (in the connection's own thread)."""


class RawServer:
    """An HTTP/1.1 server on 127.0.0.1 that lets ``handler`` write every reply by hand.

    Use it as a context manager: it listens from ``with`` on, and on exit it
    stops, closes every connection and joins every thread it started.
    ``exchanges`` lists the requests in arrival order; ``sent_bytes`` counts
    what the handlers managed to write.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.exchanges: list[Exchange] = []
        self.sent_bytes = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.failures: list[BaseException] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.02)
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> RawServer:
        self._start(self._accept)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        self._listener.close()
        with self.lock:
            threads, sockets = list(self._threads), list(self._sockets)
        for thread in threads:
            thread.join(timeout=10)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        alive = [thread.name for thread in threads if thread.is_alive()]
        assert not alive, f"server threads did not stop: {alive}"
        if self.failures and exc_info[0] is None:
            raise AssertionError("a hostile handler failed") from self.failures[0]

    @property
    def arrivals(self) -> list[float]:
        """When each request arrived (`time.monotonic`)."""
        with self.lock:
            return [exchange.arrived for exchange in self.exchanges]

    def _start(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name="hostile-server")
        with self.lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self.lock:
                self._sockets.append(sock)
            self._start(self._serve, sock)

    def _serve(self, sock: socket.socket) -> None:
        exchange: Exchange | None = None
        try:
            sock.settimeout(5.0)
            head = b""
            while b"\r\n\r\n" not in head:
                if self.stopping.is_set():
                    return
                chunk = sock.recv(65536)
                if not chunk:
                    return
                head += chunk
            exchange = Exchange(self, sock, head.split(b"\r\n\r\n", 1)[0])
            with self.lock:
                self.exchanges.append(exchange)
            self.handler(exchange)
        except OSError:
            return
        except BaseException as exc:  # a broken handler is a broken test: say so at exit
            self.failures.append(exc)
        finally:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            if exchange is not None:
                exchange.finished.set()


def dropped(exchange: Exchange) -> None:
    """The status line, headers promising a body, half the body; then the connection closes."""
    body = honest_body(exchange)
    length = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    if exchange.head(200, length):
        exchange.send(body[: len(body) // 2])


def closed_port_url() -> str:
    """A loopback URL nothing listens on: connecting to it is refused."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def honest_body(exchange: Exchange, api: FakeApi | None = None) -> bytes:
    """The honest JSON page for the request of ``exchange``."""
    return json.dumps((api or FakeApi()).honest(Asked.parse(exchange.url))).encode()


# --- judging an outcome --------------------------------------------------------------

E = TypeVar("E", bound=BaseException)


async def raised_by(call: Awaitable[object], expected: type[E], what: str) -> E:
    """The ``expected`` exception that awaiting ``call`` raises.

    Any other outcome fails the test with one line (a result, or another
    exception by its class and message): a traceback from a `RecursionError`
    deep in a JSON decoder is more than pytest can render.
    """
    try:
        result = await call
    except expected as exc:
        return exc
    except Exception as exc:
        outcome = f"raised {type(exc).__module__}.{type(exc).__qualname__}: {str(exc)[:300]!r}"
        # What the failed call built (a billion page jobs, say) goes now, not with the report.
        traceback.clear_frames(exc.__traceback__)
    else:
        outcome = f"returned {result!r:.200}"
        del result
    pytest.fail(f"{what}: {outcome}, not {expected.__name__}", pytrace=False)


# --- a runaway client -----------------------------------------------------------------


class FrozenLoop(BaseException):
    """The guard fired: the event loop ran synchronous code for too long.

    A `BaseException`, so that no ``except Exception`` in the code under test
    swallows it.
    """


def _address_space() -> int | None:
    """Bytes of address space this process uses now, where Linux says."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * resource.getpagesize()
    except OSError:
        return None


@contextlib.contextmanager
def guarded(seconds: float, memory: int = 1 << 30) -> Iterator[None]:
    """Fail, rather than freeze or kill the run, if the block runs away.

    A cancel scope cannot interrupt code that never awaits (building a
    billion page jobs), and nothing interrupts C code filling a container
    from ``range(10**9)``. So, for the block only: a signal raises
    `FrozenLoop` in the main thread after ``seconds``, and the address space
    may grow by ``memory`` bytes at most (past it: `MemoryError`). Both are
    far beyond what a passing test comes near; they exist so that a broken
    client fails its test instead of taking the machine with it.
    """

    def fire(signum: int, frame: object) -> None:
        raise FrozenLoop(f"the event loop was blocked for {seconds} s")

    previous_handler = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    previous_limit = resource.getrlimit(resource.RLIMIT_AS)
    used = _address_space()
    if used is not None:
        soft = used + memory
        if previous_limit[0] != resource.RLIM_INFINITY:
            soft = min(soft, previous_limit[0])
        resource.setrlimit(resource.RLIMIT_AS, (soft, previous_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, previous_limit)
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
