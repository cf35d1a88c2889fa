"""The synthetic data: determinism, shape, and ground truth against a brute-force sum."""

from __future__ import annotations

import enum
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oxystats.emulator import Dataset, Emulator, EmulatorConfig, GroundTruth
from oxystats.emulator._dataset import SyntheticUsage

SMALL = Dataset(seed=7, targets=5, instances_per_product=2, start=date(2024, 1, 1), days=10)


@pytest.fixture(scope="module")
def emulator() -> Emulator:
    """A small emulator: 10 days of 2 instances x 5 targets per product."""
    return Emulator(EmulatorConfig(dataset=SMALL))


def brute_force(
    emulator: Emulator,
    product: str,
    date_from: datetime,
    date_to: datetime,
    group_by: tuple[str, ...],
    instances: set[str] | None = None,
) -> GroundTruth:
    """Sum every cell whose instant lies in [date_from, date_to], one by one."""
    rows: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0, 0])
    day = date_from.astimezone(UTC).date() - timedelta(days=1)
    while day <= date_to.astimezone(UTC).date() + timedelta(days=1):
        for cell in emulator.iter_cells(product, day):
            if not date_from <= cell.instant <= date_to:
                continue
            if instances is not None and cell.instance not in instances:
                continue
            parts = {
                "DAY": cell.instant.date().isoformat(),
                "TARGET": cell.target,
                "INSTANCE": cell.instance,
            }
            row = rows[tuple(parts[g] for g in group_by)]
            row[0] += cell.requests
            row[1] += cell.traffic_bytes
        day += timedelta(days=1)
    result = {key: (r, b) for key, (r, b) in rows.items()}
    totals = (sum(r for r, _ in result.values()), sum(b for _, b in result.values()))
    return GroundTruth(grouping=group_by, rows=result, totals=totals)


def test_same_seed_same_data_other_seed_other_data() -> None:
    """Two independent generators with one seed agree; another seed differs."""
    first, again = SyntheticUsage(SMALL), SyntheticUsage(SMALL)
    other = SyntheticUsage(Dataset(seed=8, targets=5, instances_per_product=2, days=10))
    day = date(2024, 1, 3)
    assert list(first.iter_cells("HB", day)) == list(again.iter_cells("HB", day))
    assert first.instances == again.instances
    assert [i.uuid for i in first.instances] != [i.uuid for i in other.instances]
    assert list(first.iter_cells("HB", day)) != list(other.iter_cells("HB", day))


def test_instances(emulator: Emulator) -> None:
    """Instances are named per product, unique, enabled or disabled, listed per product."""
    instances = emulator.instance_list()
    assert [i["name"] for i in instances] == [
        "hb-instance-1",
        "hb-instance-2",
        "dc-instance-1",
        "dc-instance-2",
    ]
    assert len({i["uuid"] for i in instances}) == 4
    assert {i["status"] for i in instances} <= {"enabled", "disabled"}
    assert [i["product"] for i in emulator.instance_list(["DC"])] == ["DC", "DC"]


def test_cells_are_sparse_and_inside_their_hour(emulator: Emulator) -> None:
    """About 40% of hourly cells are non-zero, at varied seconds within the hour."""
    cells = [c for d in range(10) for c in emulator.iter_cells("HB", date(2024, 1, 1 + d))]
    grid = 10 * 24 * 2 * 5
    assert 0.3 < len(cells) / grid < 0.5
    seconds = {c.instant.minute * 60 + c.instant.second for c in cells}
    assert len(seconds) > len(cells) * 0.8
    assert all(c.requests > 0 and c.traffic_bytes >= c.requests for c in cells)
    assert len({(c.instance, c.target, c.instant.replace(minute=0, second=0)) for c in cells}) == (
        len(cells)
    )


def test_no_usage_outside_the_dataset_days(emulator: Emulator) -> None:
    """Before start and from start + days on, there are no cells and no rows."""
    assert list(emulator.iter_cells("HB", date(2023, 12, 31))) == []
    assert list(emulator.iter_cells("HB", date(2024, 1, 11))) == []
    truth = emulator.ground_truth(
        "HB", datetime(2024, 1, 11, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC), ["DAY"]
    )
    assert truth.rows == {}
    assert truth.totals == (0, 0)


RANGES = [
    ("2024-01-01T00:00:00Z", "2024-01-10T23:59:59Z"),
    ("2024-01-02T13:17:05+02:00", "2024-01-05T08:00:59-07:30"),
    ("2024-01-03T00:00:00-07:30", "2024-01-03T23:59:59-07:30"),
    ("2023-12-31T20:00:00Z", "2024-01-01T05:30:00+02:00"),
    ("2024-01-04T10:00:00Z", "2024-01-04T10:59:59Z"),
    ("2024-01-09T12:00:00.500000Z", "2024-01-11T00:00:00Z"),
]
GROUPINGS = [("DAY",), ("TARGET",), ("INSTANCE",), ("DAY", "TARGET"), ("INSTANCE", "DAY", "TARGET")]


@pytest.mark.parametrize(("date_from", "date_to"), RANGES)
@pytest.mark.parametrize("group_by", GROUPINGS)
def test_ground_truth_equals_brute_force(
    emulator: Emulator, date_from: str, date_to: str, group_by: tuple[str, ...]
) -> None:
    """ground_truth sums exactly the cells inside the range, offsets and seconds included."""
    start, end = datetime.fromisoformat(date_from), datetime.fromisoformat(date_to)
    for product in ("HB", "DC"):
        expected = brute_force(emulator, product, start, end, group_by)
        assert emulator.ground_truth(product, start, end, group_by) == expected


def test_second_precise_edges(emulator: Emulator) -> None:
    """A cell at instant t counts in [t, t] and not in [t+1s, ...] nor [..., t-1s]."""
    cell = next(emulator.iter_cells("DC", date(2024, 1, 5)))
    second = timedelta(seconds=1)
    inside = emulator.ground_truth("DC", cell.instant, cell.instant, ["INSTANCE", "TARGET"])
    assert inside.rows[(cell.instance, cell.target)] == (cell.requests, cell.traffic_bytes)
    after = emulator.ground_truth(
        "DC", cell.instant + second, cell.instant + 3600 * second, ["DAY"]
    )
    before = emulator.ground_truth(
        "DC", cell.instant - 3600 * second, cell.instant - second, ["DAY"]
    )
    wide = emulator.ground_truth(
        "DC", cell.instant - 3600 * second, cell.instant + 3600 * second, ["DAY"]
    )
    assert after.totals[0] + before.totals[0] + cell.requests == wide.totals[0]


def test_day_keys_are_utc_days(emulator: Emulator) -> None:
    """A day in -07:30 spans two UTC days, and DAY keys name the UTC days."""
    start = datetime.fromisoformat("2024-01-03T00:00:00-07:30")
    truth = emulator.ground_truth("HB", start, start + timedelta(hours=23, minutes=59), ["DAY"])
    assert sorted(truth.rows) == [("2024-01-03",), ("2024-01-04",)]


def test_instances_filter(emulator: Emulator) -> None:
    """Known UUIDs filter, unknown ones are ignored, only unknown ones give nothing."""
    start = datetime(2024, 1, 2, 5, tzinfo=UTC)
    end = datetime(2024, 1, 6, 17, 30, tzinfo=UTC)
    wanted = emulator.instance_list(["HB"])[1]["uuid"]
    unknown = "00000000-0000-4000-8000-000000000000"
    group_by = ("INSTANCE", "TARGET")
    filtered = emulator.ground_truth("HB", start, end, group_by, [wanted, unknown])
    assert filtered == brute_force(emulator, "HB", start, end, group_by, {wanted})
    assert {key[0] for key in filtered.rows} == {wanted}
    assert emulator.ground_truth("HB", start, end, group_by, [unknown]).rows == {}


class _GroupBy(enum.StrEnum):
    DAY = "DAY"
    TARGET = "TARGET"


def test_ground_truth_arguments(emulator: Emulator) -> None:
    """Enum members are accepted; naive datetimes, unknown names and repeats are refused."""
    start, end = datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 3, tzinfo=UTC)
    assert emulator.ground_truth("HB", start, end, [_GroupBy.DAY]) == emulator.ground_truth(
        "HB", start, end, "DAY"
    )
    with pytest.raises(ValueError, match="aware"):
        emulator.ground_truth("HB", datetime(2024, 1, 2), end, ["DAY"])
    with pytest.raises(ValueError, match="product"):
        emulator.ground_truth("XX", start, end, ["DAY"])
    with pytest.raises(ValueError, match="group_by"):
        emulator.ground_truth("HB", start, end, ["WEEK"])
    with pytest.raises(ValueError, match="repeat"):
        emulator.ground_truth("HB", start, end, ["DAY", "DAY"])


def test_dataset_validation() -> None:
    """Nonsense datasets are refused when built."""
    with pytest.raises(ValueError, match="products"):
        Dataset(products=())
    with pytest.raises(ValueError, match="unique"):
        Dataset(products=("HB", "HB"))
    with pytest.raises(ValueError, match="null"):
        Dataset(products=("null",))
    with pytest.raises(ValueError, match="density"):
        Dataset(density=1.5)
    with pytest.raises(ValueError, match="targets"):
        Dataset(targets=0)
    assert Dataset(products="HB").products == ("HB",)


_SECONDS = 10 * 86_400


@settings(max_examples=40, deadline=None)
@given(
    start=st.integers(-3600, _SECONDS),
    length=st.integers(0, 2 * 86_400),
    offset=st.sampled_from([0, 2 * 60, -(7 * 60 + 30), 5 * 60 + 45]),
    group_by=st.sampled_from(GROUPINGS),
)
def test_ground_truth_matches_brute_force_anywhere(
    start: int, length: int, offset: int, group_by: tuple[str, ...]
) -> None:
    """For arbitrary second-precise ranges in any offset, ground truth is the brute-force sum."""
    emulator = Emulator(EmulatorConfig(dataset=SMALL))
    zone = timezone(timedelta(minutes=offset))
    base = datetime(2024, 1, 1, tzinfo=UTC)
    date_from = (base + timedelta(seconds=start)).astimezone(zone)
    date_to = date_from + timedelta(seconds=length)
    expected = brute_force(emulator, "HB", date_from, date_to, group_by)
    assert emulator.ground_truth("HB", date_from, date_to, group_by) == expected
