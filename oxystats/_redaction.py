"""Keeping the key out of the logs: oxystats' own, and those of httpx and httpcore.

oxystats' own log lines are written without the key, but a message may quote
a server, or a hook's exception. httpx and httpcore log at DEBUG what they
send and what fails, and an error message may quote a header.
`redact_library_logs` installs, once per logger, a filter that replaces every
form of every key a client was made with (`oxystats._errors.secret_forms`)
in their records, whatever handler the application has.
"""

from __future__ import annotations

import logging
import threading

from oxystats._errors import redact

__all__: list[str] = []

# httpx logs on "httpx"; httpcore on one logger per module. A filter on a
# logger sees only the records logged on that very logger, so each is named.
_LIBRARY_LOGGERS = (
    "oxystats",
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


class _RedactingFilter(logging.Filter):
    """Rewrites a record's message with the keys redacted; never drops a record."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.secrets: frozenset[str] = frozenset()

    def add(self, secrets: tuple[str, ...]) -> None:
        with self._lock:
            self.secrets = self.secrets | frozenset(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self.secrets
        if not secrets:
            return True
        message = record.getMessage()
        cleaned = redact(message, tuple(secrets))
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            # Formatted later from the exception itself: format it now, redacted.
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(text, tuple(secrets))
            record.exc_info = None
        return True


_SHORTEST_SECRET = 8
"""Shorter keys are not looked for in log records: no real key is that short, and
redacting, say, "k" from every record of the process would garble them all."""

_FILTER = _RedactingFilter()
_INSTALLED = threading.Lock()
_installed = False


def redact_library_logs(secrets: tuple[str, ...]) -> None:
    """Keep ``secrets`` out of every record of the httpx and httpcore loggers."""
    global _installed
    _FILTER.add(tuple(secret for secret in secrets if len(secret) >= _SHORTEST_SECRET))
    with _INSTALLED:
        if _installed:
            return
        for name in _LIBRARY_LOGGERS:
            logging.getLogger(name).addFilter(_FILTER)
        _installed = True
