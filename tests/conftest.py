"""Shared fixtures: every async test runs once on asyncio and once on trio."""

from __future__ import annotations

import pytest

pytest_plugins = ["oxystats.testing"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each ``@pytest.mark.anyio`` test on both backends."""
    return str(request.param)
