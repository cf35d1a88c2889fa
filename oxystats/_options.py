"""Checking the options a client is built with. Pure functions, no I/O."""

from __future__ import annotations

import enum
import ipaddress
import math
import os
import re
from collections.abc import Callable, Sequence
from typing import Any, Final

import httpx

__all__ = ["DEFAULT_BASE_URL"]

DEFAULT_BASE_URL = "https://api.oxylabs.io"
"""Where the Dashboard API lives."""

DEFAULT_MAX_WINDOWS = 2_000
"""The most 31-day windows one call may plan (about 170 years) unless told otherwise."""

DEFAULT_TIMEOUT = 30.0
"""Seconds for each attempt when the client's own pool sends it and no timeout was given."""

API_KEY_ENV = "OXYLABS_API_KEY"
BASE_URL_ENV = "OXYLABS_BASE_URL"


_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


# One DNS label: letters, digits and hyphens, not at either end (underscores,
# though not in hostnames, occur in real DNS names and are let through).
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def _is_valid_host(raw_host: str) -> bool:
    """A DNS name (IDNA-encoded, as httpx gives it) or an IP address."""
    try:
        ipaddress.ip_address(raw_host)
    except ValueError:
        labels = raw_host.rstrip(".").split(".")
        return len(raw_host) <= 253 and all(_LABEL.fullmatch(label) for label in labels)
    return True


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(base_url: object, *, allow_insecure_http: bool = False) -> str:
    """The base URL to use: the argument, else ``OXYLABS_BASE_URL``, else the default.

    Only what can be right is accepted: http(s) with a host, no credentials
    (they would replace the bearer key), no query or fragment (they would
    break every request's own), a valid port; and plain ``http://`` only to
    this machine, unless ``allow_insecure_http`` (the key would travel in
    clear text).
    """
    name = "base_url"
    if base_url is None:
        from_env = os.environ.get(BASE_URL_ENV)
        if from_env:
            base_url, name = from_env, BASE_URL_ENV
        else:
            base_url = DEFAULT_BASE_URL
    if not isinstance(base_url, str):
        raise TypeError(f"base_url must be a string, not {type(base_url).__name__}")
    try:
        url = httpx.URL(base_url)
        port = url.port
    except (httpx.InvalidURL, ValueError) as exc:
        raise ValueError(f"{name} is not a valid URL: {base_url!r} ({exc})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"{name} must be an http(s) URL with a host, got {base_url!r}")
    if not _is_valid_host(url.raw_host.decode("ascii", errors="replace")):
        raise ValueError(f"{name} has a host that is not a valid host name, got {base_url!r}")
    if url.userinfo:
        # Never echoed: the userinfo may hold a password.
        raise ValueError(
            f"{name} must not contain a user name or password (they would replace the API key)"
        )
    if url.query or "?" in base_url:
        raise ValueError(f"{name} must not have a query string, got {base_url!r}")
    if url.fragment or "#" in base_url:
        raise ValueError(f"{name} must not have a fragment, got {base_url!r}")
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"{name} has an invalid port, got {base_url!r}")
    if url.scheme == "http" and not allow_insecure_http and not _is_loopback(url.host):
        raise ValueError(
            f"{name} is plain http:// to {url.host}, which would send the API key in clear "
            "text; use https://, or pass allow_insecure_http=True if the network is trusted"
        )
    return base_url.rstrip("/")


def check_timeout(timeout: object) -> float:
    """A positive, finite number of seconds."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


def check_api_key(api_key: object) -> str:
    """The key to use: the argument, else ``OXYLABS_API_KEY``; never echoed in an error."""
    name = "api_key"
    if api_key is None:
        api_key, name = os.environ.get(API_KEY_ENV), API_KEY_ENV
        if not api_key:
            raise ValueError(
                f"no API key: pass api_key=... or set the {API_KEY_ENV} environment variable"
            )
    if not isinstance(api_key, str):
        raise TypeError(f"api_key must be a string, not {type(api_key).__name__}")
    # A header value must be visible ASCII: anything else fails inside httpx or
    # h11, whose messages (and DEBUG logs) would show the key.
    if not api_key or not all("!" <= c <= "~" for c in api_key):
        raise ValueError(
            f"{name} must be a non-empty string of printable ASCII characters without "
            "whitespace (the key itself is not shown)"
        )
    return api_key


def check_max_windows(max_windows: object) -> int:
    """A whole number of windows, at least 1."""
    if isinstance(max_windows, bool) or not isinstance(max_windows, int):
        raise TypeError(f"max_windows must be an int, not {type(max_windows).__name__}")
    if max_windows < 1:
        raise ValueError(f"max_windows must be at least 1, got {max_windows!r}")
    return max_windows


def check_deadline(deadline: object) -> float | None:
    """`None`, or a positive, finite number of seconds."""
    if deadline is None:
        return None
    if isinstance(deadline, bool) or not isinstance(deadline, int | float):
        raise TypeError(f"deadline must be a number of seconds, not {type(deadline).__name__}")
    if not (deadline > 0 and math.isfinite(deadline)):
        raise ValueError(f"deadline must be a positive number of seconds, got {deadline!r}")
    return float(deadline)


def check_event_hooks(hooks: object) -> tuple[Callable[[Any], None], ...]:
    """A sequence of callables (not a lone callable, which is almost always a slip)."""
    if callable(hooks) or isinstance(hooks, str | bytes) or not isinstance(hooks, Sequence):
        raise TypeError("event_hooks must be a sequence of callables, such as [hook]")
    for hook in hooks:
        if not callable(hook):
            raise TypeError(f"event_hooks must be callables, not {type(hook).__name__}")
    return tuple(hooks)


class Unset(enum.Enum):
    """The type of `UNSET`: an option not given, where `None` means something."""

    UNSET = enum.auto()


UNSET: Final = Unset.UNSET
