"""Without an optional dependency: what still imports, and hints that name a real extra.

Each check runs in a fresh interpreter where the dependency is unimportable
(``sys.modules[name] = None``, as if it were not installed).
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from oxystats.emulator import RunningEmulator
from oxystats.testing import DEFAULT_KEY

ROOT = Path(__file__).parent.parent
EXTRAS: dict[str, list[str]] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
    "optional-dependencies"
]
HINT = re.compile(r"pip install 'oxystats\[(?P<extra>[a-z-]+)\]'")


def run_without(missing: list[str], code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter in which the ``missing`` modules cannot be imported."""
    blocked = "".join(f"sys.modules[{name!r}] = None\n" for name in missing)
    return subprocess.run(
        [sys.executable, "-c", f"import sys\n{blocked}{textwrap.dedent(code)}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_names_an_extra_with(message: str, distribution: str) -> None:
    """``message`` says ``pip install 'oxystats[EXTRA]'`` for an extra that brings it."""
    hint = HINT.search(message)
    assert hint is not None, message
    extra = hint["extra"]
    assert extra in EXTRAS, f"{message!r} names an extra pyproject.toml does not have"
    assert any(re.match(rf"{distribution}\b", need) for need in EXTRAS[extra]), EXTRAS[extra]


def test_testing_imports_without_pytest() -> None:
    """oxystats.testing imports and serves an emulator with pytest unimportable."""
    done = run_without(
        ["pytest", "_pytest"],
        """
        import httpx
        import oxystats.testing as testing

        assert not hasattr(testing, "oxystats_emulator")  # the fixtures need pytest
        assert testing.max_in_window([0.0, 0.5, 1.0], 1.0) == 2
        with testing.emulator_server() as running:
            answer = httpx.get(
                f"{running.url}/stats/v1/filters/instances",
                headers={"Authorization": f"Bearer {testing.DEFAULT_KEY}"},
            )
        assert answer.status_code == 200, answer.text
        assert "pytest" not in sys.modules or sys.modules["pytest"] is None
        print("ok")
        """,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n"


def test_parquet_output_without_pyarrow(oxystats_emulator: RunningEmulator, tmp_path: Path) -> None:
    """Without pyarrow, --format parquet fails before any request with one line naming the extra."""
    out = tmp_path / "usage.parquet"
    done = run_without(
        ["pyarrow"],
        """
        import os
        from oxystats.cli import main

        os.environ["OXYLABS_API_KEY"] = sys.argv[1]
        main(["usage", "--product", "HB", "--from", "2025-01-01", "--to", "2025-01-31",
              "--base-url", sys.argv[2], "-o", sys.argv[3]])
        """,
        DEFAULT_KEY,
        oxystats_emulator.url,
        str(out),
    )
    assert done.returncode == 1
    assert done.stderr.startswith("oxystats: error: Parquet output needs pyarrow")
    assert done.stderr.count("\n") == 1
    assert_names_an_extra_with(done.stderr, "pyarrow")
    assert oxystats_emulator.emulator.counters.total == 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("method", "distribution"),
    [("to_arrow", "pyarrow"), ("to_pandas", "pandas"), ("to_polars", "polars")],
)
def test_dataframes_without_their_library(method: str, distribution: str) -> None:
    """UsageReport.to_arrow/to_pandas/to_polars raise an ImportError naming a real extra."""
    done = run_without(
        [distribution],
        f"""
        import oxystats

        report = oxystats.UsageReport(
            [oxystats.UsageRow(("2025-01-01",), 1, 2)],
            oxystats.UsageTotals(1, 2),
            (oxystats.GroupBy.DAY,),
        )
        try:
            report.{method}()
        except ImportError as exc:
            print(exc)
        else:
            raise SystemExit("no ImportError")
        """,
    )
    assert done.returncode == 0, done.stderr
    assert f"UsageReport.{method}() needs {distribution}" in done.stdout
    assert_names_an_extra_with(done.stdout, distribution)
