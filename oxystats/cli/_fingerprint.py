"""What a usage checkpoint is bound to, and how to say which argument differs.

A checkpoint stores the arguments that decide which pages a run fetches
(product, range, grouping, instances, server). A rerun with other arguments
is refused with the options that differ, spelt as on the command line:
``checkpoint hb.sqlite was written for --to 2025-12-31, not 2025-11-30``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

from oxystats import UsageQuery
from oxystats.cli._checkpoint import Checkpoint, CheckpointMismatchError

__all__ = ["explain_mismatch", "fingerprint_arguments", "open_checkpoint"]

# The stored names (which existing checkpoint files hold) and their options, in help order.
_OPTIONS = {
    "product": "--product",
    "date_from": "--from",
    "date_to": "--to",
    "group_by": "--group-by",
    "instances": "--instance",
    "base_url": "--base-url",
}


def fingerprint_arguments(query: UsageQuery, base_url: str) -> dict[str, Any]:
    """What decides which pages a run fetches: a checkpoint is bound to it."""
    return {
        "product": query.product,
        "date_from": query.start.isoformat(),
        "date_to": query.end.isoformat(),
        "group_by": [g.value for g in query.grouping],
        "instances": list(query.instances) if query.instances else None,
        "base_url": base_url.rstrip("/"),
    }


def open_checkpoint(path: Path, query: UsageQuery, base_url: str) -> Checkpoint:
    """Open (or create) the checkpoint of this query.

    Raises:
        CheckpointMismatchError: It was written for other arguments (the
            message names the options that differ), or is not a checkpoint.
    """
    arguments = fingerprint_arguments(query, base_url)
    try:
        return Checkpoint(path, arguments)
    except CheckpointMismatchError as exc:
        if exc.stored is None:
            raise
        raise CheckpointMismatchError(
            explain_mismatch(path, exc.stored, arguments), stored=exc.stored
        ) from None


def explain_mismatch(path: Path, stored: Mapping[str, Any], given: Mapping[str, Any]) -> str:
    """One line: the options whose stored value differs from the given one, both spelt out."""
    keys = [*_OPTIONS, *sorted((set(stored) | set(given)) - set(_OPTIONS))]
    differences = [
        _difference(key, stored.get(key), given.get(key))
        for key in keys
        if stored.get(key) != given.get(key)
    ]
    if not differences:  # the same arguments, yet another digest: a file edited by hand
        return f"checkpoint {path} was written for other arguments; use another file"
    those = "that" if len(differences) == 1 else "those"
    return (
        f"checkpoint {path} was written for {'; '.join(differences)}; "
        f"rerun with {those}, or use another --checkpoint file"
    )


def _difference(key: str, stored: Any, given: Any) -> str:
    option = _OPTIONS.get(key, key)
    if isinstance(stored, str) and isinstance(given, str):
        return f"{option} {_spell(key, stored)}, not {_spell(key, given)}"
    return f"{_spell_option(option, key, stored)}, not {_spell_option(option, key, given)}"


def _spell_option(option: str, key: str, value: Any) -> str:
    if value is None:
        return f"no {option}"
    if isinstance(value, list):
        return " ".join(f"{option} {_spell(key, item)}" for item in value)
    return f"{option} {_spell(key, value)}"


def _spell(key: str, value: Any) -> str:
    """A stored value as it could be typed: a whole UTC day as ``YYYY-MM-DD``."""
    text = str(value)
    if key not in ("date_from", "date_to"):
        return text
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    edge = time(0, 0, 0) if key == "date_from" else time(23, 59, 59)
    if moment.utcoffset() == timedelta(0) and moment.time() == edge:
        return moment.date().isoformat()
    return text
