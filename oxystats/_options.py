"""Checking the options a client is built with. Pure functions, no I/O."""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Callable, Sequence
from typing import Any, Final

import httpx

__all__ = ["DEFAULT_BASE_URL"]

DEFAULT_BASE_URL = "https://api.oxylabs.io"
"""Where the Dashboard API lives."""

DEFAULT_TIMEOUT = 30.0
"""Seconds for each attempt when the client's own pool sends it and no timeout was given."""

API_KEY_ENV = "OXYLABS_API_KEY"
BASE_URL_ENV = "OXYLABS_BASE_URL"


def check_base_url(base_url: object) -> str:
    """The base URL to use: the argument, else ``OXYLABS_BASE_URL``, else the default."""
    if base_url is None:
        base_url = os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    if not isinstance(base_url, str):
        raise TypeError(f"base_url must be a string, not {type(base_url).__name__}")
    url = httpx.URL(base_url)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
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
    if api_key is None:
        api_key = os.environ.get(API_KEY_ENV)
        if not api_key:
            raise ValueError(
                f"no API key: pass api_key=... or set the {API_KEY_ENV} environment variable"
            )
    if not isinstance(api_key, str):
        raise TypeError(f"api_key must be a string, not {type(api_key).__name__}")
    if not api_key.strip() or any(c.isspace() for c in api_key):
        raise ValueError("api_key must be a non-empty string without whitespace")
    return api_key


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
