"""A throwaway PostgreSQL server for the tests: on 127.0.0.1, in a temporary directory.

The binaries come from the ``pgserver`` wheel (a test dependency: ``pip
install`` alone brings them), else from ``$OXYSTATS_TEST_POSTGRES_BIN``, else
from a system PostgreSQL (Debian's ``/usr/lib/postgresql/*/bin``, or
``postgres`` on the PATH). Without any, starting fails loudly: the tests that
need a server are never skipped for want of one.

PostgreSQL refuses to run as root, which is how CI runs the tests: then the
server runs as the unprivileged ``nobody`` account (its data directory is
handed to it), and nothing on the machine is changed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

__all__ = ["postgres_server"]

BIN_ENV = "OXYSTATS_TEST_POSTGRES_BIN"
"""A directory with ``initdb`` and ``postgres``, to use instead of the ones found."""

_UNPRIVILEGED = "nobody"
_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 30.0


def postgres_bin() -> Path:
    """The directory holding ``initdb`` and ``postgres``.

    Raises:
        RuntimeError: No PostgreSQL binaries anywhere.
    """
    candidates: list[Path] = []
    if BIN_ENV in os.environ:
        candidates.append(Path(os.environ[BIN_ENV]))
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin is not None:
        # The wheel's binaries, found without importing pgserver (which sets up
        # server handling of its own at import).
        candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True
    )
    candidates.extend(debian)
    on_path = shutil.which("postgres")
    if on_path is not None:
        candidates.append(Path(on_path).resolve().parent)
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "postgres").is_file():
            return candidate
    raise RuntimeError(
        "no PostgreSQL binaries for the sync tests: install the test dependencies "
        f"(the pgserver wheel), or a system PostgreSQL, or set {BIN_ENV}"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _account() -> pwd.struct_passwd | None:
    """Whom to run the server as: ``nobody`` when we are root, else ourselves (`None`)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(_UNPRIVILEGED)
    except KeyError:
        raise RuntimeError(
            f"running as root, and PostgreSQL refuses root: no {_UNPRIVILEGED!r} account "
            "to run the test server as"
        ) from None


def _wait_until_ready(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    engine = sa.create_engine(url)
    deadline = time.monotonic() + _START_TIMEOUT
    try:
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited at start:\n{log.read_text()}")
            try:
                with engine.connect():
                    return
            except sa.exc.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"PostgreSQL not ready after {_START_TIMEOUT:.0f} s:\n{log.read_text()}"
                    ) from None
                time.sleep(0.05)
    finally:
        engine.dispose()


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a fresh server for the block; yield the URL of its ``postgres`` database."""
    binaries = postgres_bin()
    account = _account()
    base = Path(tempfile.mkdtemp(prefix="oxystats-postgres-"))
    user: int | None = None
    group: int | None = None
    extra_groups: list[int] | None = None
    if account is not None:
        os.chown(base, account.pw_uid, account.pw_gid)
        user, group, extra_groups = account.pw_uid, account.pw_gid, []
    data, log = base / "data", base / "server.log"
    try:
        initdb = subprocess.run(
            [
                str(binaries / "initdb"),
                *("-D", str(data), "-U", "postgres", "--auth=trust"),
                *("--encoding=UTF8", "--no-locale", "--no-sync"),
            ],
            capture_output=True,
            text=True,
            check=False,
            user=user,
            group=group,
            extra_groups=extra_groups,
        )
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{initdb.stdout}\n{initdb.stderr}")
        port = _free_port()
        with log.open("wb") as log_file:
            server = subprocess.Popen(
                [
                    str(binaries / "postgres"),
                    *("-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(base)),
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                user=user,
                group=group,
                extra_groups=extra_groups,
            )
        try:
            url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
            _wait_until_ready(url, server, log)
            yield url
        finally:
            # SIGINT is PostgreSQL's "fast" shutdown: clients are disconnected, not waited for.
            server.send_signal(signal.SIGINT)
            try:
                server.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    finally:
        shutil.rmtree(base, ignore_errors=True)
