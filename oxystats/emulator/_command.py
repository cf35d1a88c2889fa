"""The emulator's command line: ``python -m oxystats.emulator`` and ``oxystats emulator``.

Example::

    python -m oxystats.emulator --port 8000 --documented-limits --latency 0.06 --error-500 0.1
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from datetime import date, datetime, timedelta

from ._clock import format_instant, parse_instant
from ._config import (
    DEFAULT_ACCOUNT,
    DEFAULT_KEY,
    ArrivalJitter,
    Dataset,
    EmulatorConfig,
    Faults,
    RateLimits,
)
from ._server import serve

_DEFAULT = " (default: %(default)s)"


def _key(text: str) -> tuple[str, str]:
    key, _, account = text.partition(":")
    if not key:
        raise argparse.ArgumentTypeError("expected KEY or KEY:ACCOUNT")
    return key, account or DEFAULT_ACCOUNT


def _instant(text: str) -> datetime:
    try:
        return parse_instant(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _parser(prog: str = "python -m oxystats.emulator") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve a local emulation of the Oxylabs Dashboard API.",
    )
    net = parser.add_argument_group("server")
    net.add_argument(
        "--host", default="127.0.0.1", help="the one interface to listen on" + _DEFAULT
    )
    net.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one" + _DEFAULT)
    net.add_argument(
        "--http",
        choices=["auto", "h11", "httptools"],
        default="auto",
        help="uvicorn's HTTP implementation" + _DEFAULT,
    )
    net.add_argument("--log-level", default="warning", help="uvicorn's log level" + _DEFAULT)
    net.add_argument(
        "--key",
        dest="keys",
        action="append",
        type=_key,
        metavar="KEY[:ACCOUNT]",
        help=(
            "accept this API key, of this account (repeatable; ACCOUNT defaults to "
            f"{DEFAULT_ACCOUNT}) (default: {DEFAULT_KEY}:{DEFAULT_ACCOUNT})"
        ),
    )
    data = parser.add_argument_group("data")
    defaults = Dataset()
    data.add_argument("--seed", type=int, default=defaults.seed, help="dataset seed" + _DEFAULT)
    data.add_argument(
        "--products", default=",".join(defaults.products), help="comma-separated" + _DEFAULT
    )
    data.add_argument(
        "--instances-per-product",
        type=int,
        default=defaults.instances_per_product,
        help="instances of each product" + _DEFAULT,
    )
    data.add_argument(
        "--targets", type=int, default=defaults.targets, help="distinct target hosts" + _DEFAULT
    )
    data.add_argument(
        "--start",
        type=date.fromisoformat,
        default=defaults.start,
        help="first UTC day with usage" + _DEFAULT,
    )
    data.add_argument(
        "--days", type=int, default=defaults.days, help="UTC days with usage" + _DEFAULT
    )
    clock = parser.add_argument_group("clock")
    clock.add_argument(
        "--now",
        type=_instant,
        default=None,
        metavar="INSTANT",
        help=(
            "start a clock: usage after INSTANT is invisible; INSTANT is ISO 8601 with Z or "
            "an offset, or a date for its 00:00:00Z (default: no clock, all data visible)"
        ),
    )
    limits = parser.add_argument_group("rate limits")
    limits.add_argument(
        "--documented-limits",
        action="store_true",
        help=(
            "enforce 10/s and 10 in flight per key, 100/s and 100 in flight per account "
            "(default: no limits)"
        ),
    )
    jitter = parser.add_argument_group("arrival jitter (a network path before the server)")
    no_jitter = ArrivalJitter()
    jitter.add_argument(
        "--arrival-jitter",
        type=float,
        default=no_jitter.max_delay,
        metavar="SECONDS",
        help="hold each request for a uniform delay in [0, SECONDS] before it arrives" + _DEFAULT,
    )
    jitter.add_argument(
        "--jitter-spike-probability",
        type=float,
        default=no_jitter.spike_probability,
        metavar="P",
        help="probability that the delay is a spike instead" + _DEFAULT,
    )
    jitter.add_argument(
        "--jitter-spike-factor",
        type=float,
        default=no_jitter.spike_factor,
        metavar="F",
        help="a spike is uniform in [SECONDS, F * SECONDS]" + _DEFAULT,
    )
    jitter.add_argument(
        "--jitter-seed",
        type=int,
        default=no_jitter.seed,
        metavar="N",
        help="seed of the delays" + _DEFAULT,
    )
    faults = parser.add_argument_group("faults (probabilities per request, at most 1 in all)")
    none = Faults()

    def probability(flag: str, default: float, what: str) -> None:
        faults.add_argument(flag, type=float, default=default, metavar="P", help=what + _DEFAULT)

    faults.add_argument(
        "--fault-seed",
        type=int,
        default=none.seed,
        metavar="N",
        help="seed of the fault stream" + _DEFAULT,
    )
    probability("--error-500", none.error_500, "500 Internal server error")
    probability("--error-503", none.error_503, "503 Service unavailable")
    probability("--spurious-429", none.spurious_429, "429 although no limit was hit")
    probability("--drop-connection", none.drop_connection, "half the body, then the socket dies")
    probability("--malformed-body", none.malformed_body, "truncated or wrong-shaped JSON")
    probability("--ignore-page", none.ignore_page, "page 1 whatever page was asked")
    probability("--trickle-body", none.trickle_body, "the body one byte at a time")
    probability("--inflate-total-pages", none.inflate_total_pages, "a huge total_pages")
    probability("--grow-total-pages", none.grow_total_pages, "one more total_pages after page 1")
    probability("--oversized-body", none.oversized_body, "the JSON padded to a huge size")
    probability("--hang", none.hang, "no answer at all, the connection held open")
    faults.add_argument(
        "--latency",
        type=float,
        default=none.latency,
        metavar="SECONDS",
        help="seconds added to every admitted request" + _DEFAULT,
    )
    faults.add_argument(
        "--latency-jitter",
        type=float,
        default=none.latency_jitter,
        metavar="SECONDS",
        help="+/- seconds around --latency" + _DEFAULT,
    )
    faults.add_argument(
        "--retry-after",
        type=int,
        default=none.retry_after,
        metavar="SECONDS",
        help="Retry-After of spurious 429s" + _DEFAULT,
    )
    faults.add_argument(
        "--trickle-interval",
        type=float,
        default=none.trickle_interval,
        metavar="SECONDS",
        help="seconds between two bytes of a trickled body" + _DEFAULT,
    )
    faults.add_argument(
        "--inflated-total-pages",
        type=int,
        default=none.inflated_total_pages,
        metavar="N",
        help="the total_pages an inflated page claims" + _DEFAULT,
    )
    faults.add_argument(
        "--oversized-bytes",
        type=int,
        default=none.oversized_bytes,
        metavar="N",
        help="the size of an oversized body" + _DEFAULT,
    )
    return parser


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """The `EmulatorConfig` the parsed command line asks for."""
    return EmulatorConfig(
        dataset=Dataset(
            seed=args.seed,
            products=tuple(p for p in args.products.split(",") if p),
            instances_per_product=args.instances_per_product,
            targets=args.targets,
            start=args.start,
            days=args.days,
        ),
        keys=dict(args.keys or [(DEFAULT_KEY, DEFAULT_ACCOUNT)]),
        limits=RateLimits.documented() if args.documented_limits else RateLimits(),
        faults=Faults(
            seed=args.fault_seed,
            error_500=args.error_500,
            error_503=args.error_503,
            spurious_429=args.spurious_429,
            drop_connection=args.drop_connection,
            malformed_body=args.malformed_body,
            latency=args.latency,
            latency_jitter=args.latency_jitter,
            retry_after=args.retry_after,
            ignore_page=args.ignore_page,
            trickle_body=args.trickle_body,
            inflate_total_pages=args.inflate_total_pages,
            grow_total_pages=args.grow_total_pages,
            oversized_body=args.oversized_body,
            hang=args.hang,
            trickle_interval=args.trickle_interval,
            inflated_total_pages=args.inflated_total_pages,
            oversized_bytes=args.oversized_bytes,
        ),
        jitter=ArrivalJitter(
            max_delay=args.arrival_jitter,
            spike_probability=args.jitter_spike_probability,
            spike_factor=args.jitter_spike_factor,
            seed=args.jitter_seed,
        ),
        now=args.now,
    )


def describe(config: EmulatorConfig) -> list[str]:
    """What the ready banner says under the URL: the data served, the clock, whose keys.

    Keys are never in it: only how many there are and whose they are.
    """
    dataset = config.dataset
    last = dataset.start + timedelta(days=dataset.days - 1)
    lines = [
        f"  data: {', '.join(dataset.products)}, UTC days {dataset.start.isoformat()} "
        f"to {last.isoformat()} ({dataset.days} days)"
    ]
    if config.now is not None:
        lines.append(f"  clock: now is {format_instant(config.now)}; later usage is invisible")
    accounts = sorted(set(config.keys.values()))
    lines.append(f"  {len(config.keys)} key(s) for {', '.join(accounts)}")
    return lines


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Parse the command line and serve until interrupted.

    ``prog`` names the command in help and errors (``oxystats emulator`` reuses this).
    """
    parser = _parser() if prog is None else _parser(prog)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except (ValueError, TypeError) as error:
        parser.error(str(error))

    def ready(url: str) -> None:
        # The URL alone on stdout, for scripts to read; the rest for people.
        print(f"oxystats emulator listening on {url}", flush=True)
        print("\n".join(describe(config)), file=sys.stderr, flush=True)

    # Ctrl+C is how a foreground server is meant to stop: no traceback for it.
    with contextlib.suppress(KeyboardInterrupt):
        serve(
            config, args.host, args.port, http=args.http, log_level=args.log_level, on_ready=ready
        )
    return 0
