"""How the ``oxystats`` command fails: one line on stderr and an exit code.

Expected failures print ``oxystats: error: ...`` (a JSON object with
``--log-format json``) and exit with 2 (bad arguments) or 1 (the API or the
network failed); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from oxystats import (
    APIConnectionError,
    AuthenticationError,
    OxystatsError,
    PermissionDeniedError,
)
from oxystats.cli._logging import reset_log_options, say

__all__ = ["OxystatsGroup", "debug_option", "is_interrupt"]

API_KEY_ENV = "OXYLABS_API_KEY"
"""Where the command reads the API key from, unless ``--api-key-file`` is given."""

F = TypeVar("F", bound=Callable[..., Any])

_DEBUG = {"on": False}


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        _DEBUG["on"] = True


def is_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` is Ctrl-C: a `KeyboardInterrupt`, or a group holding one.

    On trio, Ctrl-C lands in whichever task is running, and a task group
    gathers it into a `BaseExceptionGroup` on its way out.
    """
    if isinstance(exc, KeyboardInterrupt):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(is_interrupt(inner) for inner in exc.exceptions)
    return False


def error_line(message: str) -> None:
    say("error", message)


def describe(exc: BaseException) -> str:
    """One line for an expected failure; never the key (exceptions do not carry it)."""
    if isinstance(exc, AuthenticationError):
        said = f": {exc.server_message}" if exc.server_message else ""
        return f"the API key was refused (401{said}); check {API_KEY_ENV} or --api-key-file"
    if isinstance(exc, PermissionDeniedError):
        said = f": {exc.server_message}" if exc.server_message else ""
        return f"permission denied (403{said}); the key is missing or may not do this"
    if isinstance(exc, APIConnectionError):
        return f"cannot reach the API: {exc}"
    return str(exc) or type(exc).__name__


class OxystatsGroup(click.Group):
    """The command group; turns expected failures into one line and an exit code."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        _DEBUG["on"] = False  # a new run; --debug (here or on the command) sets it again
        reset_log_options()
        return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except (KeyboardInterrupt, BaseExceptionGroup) as exc:
            if not is_interrupt(exc):
                raise
            say("warning", "interrupted", tagged=False)
            raise click.exceptions.Exit(130) from None
        except click.UsageError as exc:
            if _DEBUG["on"]:
                raise
            hint = ""
            if exc.ctx is not None:
                hint = f" (see '{exc.ctx.command_path} --help')"
            error_line(exc.format_message() + hint)
            raise click.exceptions.Exit(exc.exit_code) from None
        except click.ClickException as exc:
            if _DEBUG["on"]:
                raise
            error_line(exc.format_message())
            raise click.exceptions.Exit(exc.exit_code) from None
        except (ValueError, TypeError) as exc:  # bad arguments, a foreign checkpoint
            if _DEBUG["on"]:
                raise
            error_line(describe(exc))
            raise click.exceptions.Exit(2) from None
        except BrokenPipeError:
            # The reader went away (``oxystats usage ... | head``): stop quietly.
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise click.exceptions.Exit(141) from None
        except (OxystatsError, ImportError, OSError) as exc:
            if _DEBUG["on"]:
                raise
            error_line(describe(exc))
            raise click.exceptions.Exit(1) from None


def debug_option(command: F) -> F:
    """The ``--debug`` flag: tracebacks instead of one-line errors."""
    return click.option(
        "--debug",
        is_flag=True,
        is_eager=True,
        expose_value=False,
        callback=_set_debug,
        help="Show tracebacks instead of one-line errors.",
    )(command)
