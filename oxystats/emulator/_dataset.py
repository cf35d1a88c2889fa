"""Deterministic synthetic usage and its aggregation.

The traffic is a grid of hourly cells (instance x target x hour). Each
non-zero cell is recorded at one instant inside its hour. A UTC day's cells
come from a `random.Random` seeded with (seed, product, day), so any day can be
generated on its own, in any order, with the same result: startup costs
nothing and only the days a query touches are ever computed.

Queries add whole days from per-day sums (one entry per instance x target)
and filter the cells of the (at most two) partial edge days to the second.
"""

from __future__ import annotations

import calendar
import operator
import random
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta

import attrs

from ._config import Dataset

__all__ = [
    "DAY",
    "GROUPINGS",
    "INSTANCE",
    "TARGET",
    "Cell",
    "GroundTruth",
    "InstanceRecord",
    "SyntheticUsage",
    "epoch_bounds",
    "usage_for",
]

DAY = "DAY"
TARGET = "TARGET"
INSTANCE = "INSTANCE"
GROUPINGS = (DAY, TARGET, INSTANCE)

SECONDS_PER_DAY = 86_400
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Sizes of the synthetic traffic; only their order of magnitude matters.
_MAX_REQUESTS_PER_CELL = 400
_MIN_BYTES_PER_REQUEST = 1_500
_SPREAD_BYTES_PER_REQUEST = 120_000

# How many days of raw cells stay in memory; per-day sums are kept for every
# day ever touched (they are ~60 small tuples each), raw cells are not.
_CELL_CACHE_DAYS = 64

# One generated cell: (instance index, target index, second of the day, requests, bytes).
_RawCell = tuple[int, int, int, int, int]
# Per-day sum for one instance x target: (instance index, target index, requests, bytes).
_DaySum = tuple[int, int, int, int]
Row = tuple[tuple[str, ...], int, int]


@attrs.frozen
class InstanceRecord:
    """A product instance, as the instances endpoint lists it."""

    uuid: str
    name: str
    status: str
    product: str

    def as_json(self) -> dict[str, str]:
        """The instance as one item of the endpoint's ``data`` list."""
        return {
            "uuid": self.uuid,
            "name": self.name,
            "status": self.status,
            "product": self.product,
        }


@attrs.frozen
class Cell:
    """One non-zero usage cell: what brute-force checks sum up."""

    product: str
    instance: str
    target: str
    instant: datetime
    requests: int
    traffic_bytes: int


@attrs.frozen
class GroundTruth:
    """The exact answer to a usage query: no 31-day rule, no pagination.

    ``rows`` maps each ``grouped_by`` key to ``(requests, traffic_bytes)``;
    ``totals`` is ``(requests, traffic_bytes)`` over the whole query.
    """

    grouping: tuple[str, ...]
    rows: dict[tuple[str, ...], tuple[int, int]]
    totals: tuple[int, int]


def epoch_bounds(date_from: datetime, date_to: datetime) -> tuple[int, int]:
    """Whole-second epoch bounds of the inclusive range ``[date_from, date_to]``.

    Usage instants are whole seconds, so a fractional start rounds up and a
    fractional end rounds down.
    """
    start = date_from - _EPOCH
    end = date_to - _EPOCH
    low = start.days * SECONDS_PER_DAY + start.seconds + (1 if start.microseconds else 0)
    high = end.days * SECONDS_PER_DAY + end.seconds
    return low, high


class SyntheticUsage:
    """The usage of one `Dataset`: instances, targets, cells and aggregation.

    Thread-safe: the emulator may serve from a thread while a test asks for
    ground truth from another.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.start_epoch = calendar.timegm(dataset.start.timetuple())
        self._lock = threading.Lock()
        rng = random.Random(f"oxystats-instances:{dataset.seed}")
        self.instances: list[InstanceRecord] = []
        self._activity: list[float] = []
        self.instances_of: dict[str, tuple[int, ...]] = {}
        for product in dataset.products:
            indices = []
            for number in range(1, dataset.instances_per_product + 1):
                indices.append(len(self.instances))
                # The first instance of a product is always enabled; later ones may not be.
                enabled = number == 1 or rng.random() < 0.75
                self.instances.append(
                    InstanceRecord(
                        uuid=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                        name=f"{product.lower()}-instance-{number}",
                        status="enabled" if enabled else "disabled",
                        product=product,
                    )
                )
                self._activity.append(0.3 + 1.2 * rng.random())
            self.instances_of[product] = tuple(indices)
        self.index_of_uuid = {record.uuid: i for i, record in enumerate(self.instances)}
        width = max(2, len(str(dataset.targets)))
        self.targets = [f"www.target-{n:0{width}d}.example" for n in range(1, dataset.targets + 1)]
        # A few targets are popular, most are not: realistic-looking skew.
        self._popularity = [1.0 / (1.0 + 0.25 * n) for n in range(dataset.targets)]
        self._day_names = [
            (dataset.start + timedelta(days=d)).isoformat() for d in range(dataset.days)
        ]
        self._sums: dict[tuple[str, int], tuple[_DaySum, ...]] = {}
        self._cells: OrderedDict[tuple[str, int], tuple[_RawCell, ...]] = OrderedDict()

    # -- generation -----------------------------------------------------------------

    def _generate(self, product: str, day: int) -> tuple[_RawCell, ...]:
        """The raw non-zero cells of one product on one day (index from ``start``)."""
        data = self.dataset
        rand = random.Random(f"oxystats-usage:{data.seed}:{product}:{day}").random
        density = data.density
        cells: list[_RawCell] = []
        for index in self.instances_of[product]:
            activity = self._activity[index]
            for target, popularity in enumerate(self._popularity):
                scale = _MAX_REQUESTS_PER_CELL * popularity * activity
                for hour in range(24):
                    if rand() < density:
                        requests = 1 + int(rand() * scale)
                        size = _MIN_BYTES_PER_REQUEST + int(rand() * _SPREAD_BYTES_PER_REQUEST)
                        second = hour * 3600 + int(rand() * 3600)
                        cells.append((index, target, second, requests, requests * size))
        return tuple(cells)

    def _day_cells(self, product: str, day: int) -> tuple[_RawCell, ...]:
        key = (product, day)
        with self._lock:
            cached = self._cells.get(key)
            if cached is not None:
                self._cells.move_to_end(key)
                return cached
        cells = self._generate(product, day)
        with self._lock:
            self._cells[key] = cells
            while len(self._cells) > _CELL_CACHE_DAYS:
                self._cells.popitem(last=False)
        return cells

    def _day_sums(self, product: str, day: int) -> tuple[_DaySum, ...]:
        key = (product, day)
        cached = self._sums.get(key)
        if cached is not None:
            return cached
        totals: dict[tuple[int, int], list[int]] = {}
        for index, target, _, requests, size in self._day_cells(product, day):
            acc = totals.get((index, target))
            if acc is None:
                totals[(index, target)] = [requests, size]
            else:
                acc[0] += requests
                acc[1] += size
        sums = tuple((i, t, acc[0], acc[1]) for (i, t), acc in sorted(totals.items()))
        with self._lock:
            self._sums[key] = sums
        return sums

    def iter_cells(self, product: str, day: date) -> Iterator[Cell]:
        """Every non-zero cell of ``product`` on the UTC ``day``, for brute-force checks."""
        index = (day - self.dataset.start).days
        if not 0 <= index < self.dataset.days:
            return
        day_start = self.start_epoch + index * SECONDS_PER_DAY
        for instance, target, second, requests, size in self._day_cells(product, index):
            yield Cell(
                product=product,
                instance=self.instances[instance].uuid,
                target=self.targets[target],
                instant=datetime.fromtimestamp(day_start + second, UTC),
                requests=requests,
                traffic_bytes=size,
            )

    # -- aggregation ----------------------------------------------------------------

    def aggregate(
        self,
        product: str,
        low: int,
        high: int,
        grouping: Sequence[str],
        instances: frozenset[int] | None,
    ) -> tuple[list[Row], int, int]:
        """Sum usage in the epoch-second range ``[low, high]``, grouped by ``grouping``.

        Returns the rows sorted by key (no zero rows) and the two totals.
        ``instances`` restricts to those instance indices; ``None`` means all.
        """
        data = self.dataset
        first = max(0, (low - self.start_epoch) // SECONDS_PER_DAY)
        last = min(data.days - 1, (high - self.start_epoch) // SECONDS_PER_DAY)
        key_of = self._key_builder(grouping)
        acc: dict[tuple[str, ...], list[int]] = {}
        for day in range(first, last + 1):
            day_start = self.start_epoch + day * SECONDS_PER_DAY
            day_name = self._day_names[day]
            if low <= day_start and day_start + SECONDS_PER_DAY - 1 <= high:
                entries: Iterable[_DaySum] = self._day_sums(product, day)
            else:
                # An edge day: only the cells whose instant lies inside the range.
                entries = [
                    (i, t, r, b)
                    for i, t, s, r, b in self._day_cells(product, day)
                    if low <= day_start + s <= high
                ]
            for index, target, requests, size in entries:
                if instances is not None and index not in instances:
                    continue
                key = key_of(day_name, index, target)
                row = acc.get(key)
                if row is None:
                    acc[key] = [requests, size]
                else:
                    row[0] += requests
                    row[1] += size
        rows = [(key, value[0], value[1]) for key, value in sorted(acc.items())]
        return rows, sum(r[1] for r in rows), sum(r[2] for r in rows)

    def _key_builder(self, grouping: Sequence[str]) -> Callable[[str, int, int], tuple[str, ...]]:
        uuids = [record.uuid for record in self.instances]
        targets = self.targets
        positions = [GROUPINGS.index(name) for name in grouping]
        # itemgetter with one index returns a bare item, with several a tuple.
        pick = operator.itemgetter(*positions)
        if len(positions) == 1:
            return lambda day, index, target: (pick((day, targets[target], uuids[index])),)
        return lambda day, index, target: pick((day, targets[target], uuids[index]))


_SHARED: dict[Dataset, SyntheticUsage] = {}
_SHARED_LOCK = threading.Lock()


def usage_for(dataset: Dataset) -> SyntheticUsage:
    """The `SyntheticUsage` of ``dataset``, shared by every emulator using it.

    The data is a pure function of the dataset, so emulators created per test
    reuse each other's generated days instead of recomputing them.
    """
    with _SHARED_LOCK:
        usage = _SHARED.get(dataset)
        if usage is None:
            if len(_SHARED) >= 16:
                _SHARED.pop(next(iter(_SHARED)))
            usage = _SHARED[dataset] = SyntheticUsage(dataset)
        return usage
