"""The ``oxystats`` command: demo, instances, usage, sync, exporter and emulator.

Thin: it parses arguments, then hands over to the public `oxystats` API (and
the emulator's, for ``demo`` and ``emulator``), with output writers, a
progress bar, checkpoints, log lines and a Prometheus exporter of its own.
Needs the ``cli`` extra (click, rich and SQLAlchemy); ``exporter`` the ``prometheus``
one too, and ``sync`` into PostgreSQL the ``postgresql`` one.

Expected failures print one line, ``oxystats: error: ...``, on stderr and exit
with 2 (bad arguments) or 1 (the API or the network failed); ``--debug``
shows the traceback instead. The API key is read from ``OXYLABS_API_KEY`` or
``--api-key-file`` and is never printed.
"""

from oxystats.cli._main import cli, main

__all__ = ["cli", "main"]
