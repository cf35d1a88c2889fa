"""The project's verbs: ``nox -s tests``, ``lint``, ``typecheck``, ``docs``, ``bench``."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

PYPROJECT = nox.project.load_toml("pyproject.toml")


def install_groups(session: nox.Session, *groups: str) -> None:
    """Install the named ``[dependency-groups]`` of pyproject.toml."""
    for group in groups:
        session.install(*nox.project.dependency_groups(PYPROJECT, group))


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite; every async test runs on asyncio and on trio."""
    session.install("-e", ".[emulator,cli,parquet,postgresql,redis]")
    install_groups(session, "tests")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff, and the import contracts with import-linter."""
    install_groups(session, "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    # The three programs' seams: see [tool.importlinter] in pyproject.toml.
    session.run("lint-imports")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check the package, its tests and benchmarks with mypy --strict."""
    session.install("-e", ".[emulator,cli,parquet,postgresql,redis]")
    install_groups(session, "typing", "bench")
    session.run("mypy", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation with ``mkdocs build --strict``."""
    session.install("-e", ".[emulator,cli]")
    install_groups(session, "docs")
    session.run(
        "mkdocs",
        "build",
        "--strict",
        "--site-dir",
        session.create_tmp() + "/site",
        env={"NO_MKDOCS_2_WARNING": "1"},
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks; each prints ratios measured in one run."""
    session.install("-e", ".[emulator,cli,redis]")
    install_groups(session, "bench")
    names = session.posargs or [
        "emulator_throughput",
        "structuring",
        "throughput",
        "memory",
        "backfill",
        "streaming",
        "sync",
        "shared_limits",
    ]
    for name in names:
        session.run("python", "-m", f"benchmarks.{name}")
