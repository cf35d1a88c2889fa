"""Structuring a 100-row usage page: the project's converter against pydantic v2.

Run from the repository root::

    python -m benchmarks.structuring [--rounds 15] [--calls 200]

The page is a real DAY x TARGET page from the emulator, as ``json.loads`` gives
it. ``oxystats._convert.structure(doc, oxystats.UsagePage)`` builds frozen
attrs classes; the pydantic side validates the same document into frozen
models of the same shape, with strict scalars (as strict as the converter:
``true`` is not an integer, ``"5"`` is not a number; JSON arrays become
tuples). Rounds alternate which side goes first; each side's rate is the
median over rounds, in rows per second.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr

import oxystats
from oxystats._convert import structure
from oxystats.emulator import Emulator

QUERY = (
    "product=HB&date_from=2024-03-01T00:00:00Z&date_to=2024-03-31T23:59:59Z"
    "&group_by[]=DAY&group_by[]=TARGET&page=2&per_page=100"
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Row(_Frozen):
    """``UsageRow``."""

    grouped_by: tuple[StrictStr, ...]
    requests: StrictInt
    traffic_bytes: StrictInt


class Totals(_Frozen):
    """``UsageTotals``."""

    requests: StrictInt
    traffic_bytes: StrictInt


class PaginationModel(_Frozen):
    """``Pagination``."""

    page: StrictInt
    per_page: StrictInt
    total_items: StrictInt
    total_pages: StrictInt


class Meta(_Frozen):
    """The ``meta`` block."""

    pagination: PaginationModel
    grouping: tuple[StrictStr, ...]


class Page(_Frozen):
    """``UsagePage``: the same fields, nested as the JSON is."""

    data: tuple[Row, ...]
    totals: Totals
    meta: Meta


def usage_page_document() -> dict[str, Any]:
    """A full 100-row DAY x TARGET page from the emulator, parsed by ``json.loads``."""
    status, body = Emulator().usage_response(QUERY)
    assert status == 200
    document: dict[str, Any] = json.loads(body)
    assert len(document["data"]) == 100
    return document


def rate(fn: Callable[[], object], calls: int, rows: int) -> float:
    """Rows per second of ``calls`` calls of ``fn``."""
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return calls * rows / (time.perf_counter() - started)


def main() -> int:
    """Measure both, interleaved, and print the rates, the ratio and a verdict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=200, help="structure calls per round")
    args = parser.parse_args()
    document = usage_page_document()
    rows = len(document["data"])

    def ours() -> oxystats.UsagePage:
        return structure(document, oxystats.UsagePage)

    def theirs() -> Page:
        return Page.model_validate(document)

    # Same content both ways, before timing anything.
    page, model = ours(), theirs()
    assert [(r.grouped_by, r.requests, r.traffic_bytes) for r in page.data] == [
        (r.grouped_by, r.requests, r.traffic_bytes) for r in model.data
    ]
    assert page.pagination.total_pages == model.meta.pagination.total_pages
    assert page.grouping == model.meta.grouping

    rate(ours, args.calls, rows)  # warm-up
    rate(theirs, args.calls, rows)
    ours_rates: list[float] = []
    theirs_rates: list[float] = []
    for round_number in range(args.rounds):
        if round_number % 2:
            theirs_rates.append(rate(theirs, args.calls, rows))
            ours_rates.append(rate(ours, args.calls, rows))
        else:
            ours_rates.append(rate(ours, args.calls, rows))
            theirs_rates.append(rate(theirs, args.calls, rows))
    ours_rate = statistics.median(ours_rates)
    theirs_rate = statistics.median(theirs_rates)
    ratio = ours_rate / theirs_rate
    print(
        f"structuring: one {rows}-row DAY x TARGET usage page, {args.rounds} interleaved "
        f"rounds of {args.calls} calls, median per side"
    )
    print(f"  oxystats converter (cattrs + attrs): {ours_rate:>12,.0f} rows/s")
    print(f"  pydantic v2 frozen models (strict): {theirs_rate:>12,.0f} rows/s")
    print(f"  converter / pydantic:                {ratio:>12.2f}x")
    verdict = "PASS" if ratio >= 1.0 else "FAIL"
    print(f"{verdict}: converter at least as fast as pydantic v2 ({ratio:.2f}x)")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
