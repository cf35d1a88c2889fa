"""Shared fixtures: async tests run on asyncio and on trio; the sync tests get fresh databases."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest_plugins = ["oxystats.testing"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each ``@pytest.mark.anyio`` test on both backends."""
    return str(request.param)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server of the session's own, on 127.0.0.1: its ``postgres`` database's URL.

    Started on first use, stopped when the session ends; never skipped: with
    no PostgreSQL to start, the tests that need one fail.
    """
    from postgres_server import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Makes fresh, empty databases: SQLite files, or databases on the session's PostgreSQL."""
    if request.param == "sqlite":
        paths = (str(tmp_path / f"usage-{number}.sqlite") for number in itertools.count())
        yield lambda: next(paths)
        return

    import sqlalchemy as sa

    server = sa.make_url(request.getfixturevalue("postgres_url"))
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    names: list[str] = []

    def create() -> str:
        name = f"test_{uuid.uuid4().hex[:16]}"
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}")
        names.append(name)
        # As a user would write it: no driver named.
        url = server.set(drivername="postgresql", database=name)
        return url.render_as_string(hide_password=False)

    try:
        yield create
    finally:
        with admin.connect() as connection:
            for name in names:
                connection.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
        admin.dispose()
