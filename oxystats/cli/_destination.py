"""Where a command's output goes: standard output, or a file written atomically.

``-o FILE`` is checked before anything is fetched. It must be a new path, or
an existing regular file and ``--force``: a directory, a symbolic link, a
device, a FIFO or a socket is refused, and so is an existing file without
``--force``. ``-o -`` (like no ``-o``) means standard output; a file named
``-`` is ``./-``.

The file is written to a temporary file beside it (``FILE.<random>.part``:
the same directory, so the final rename stays on one file system) and renamed
onto ``FILE`` only once complete. On any failure or interrupt the temporary
file is removed, so ``FILE`` is either as it was or whole; only a process
killed outright (``kill -9``) can leave a ``.part`` file behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import attrs

__all__ = ["Destination", "OutputError", "refuse_checkpoint_as_output"]

STDOUT = "-"
"""The ``--output`` that means standard output."""

# SQLite keeps a checkpoint's recent writes in files beside it, named after it.
_CHECKPOINT_FILES = {
    "": "the --checkpoint file",
    "-wal": "the checkpoint's -wal file",
    "-shm": "the checkpoint's -shm file",
    "-journal": "the checkpoint's -journal file",
}


class OutputError(ValueError):
    """``--output`` names a place the command will not write to: a usage error (exit 2)."""


def isatty(stream: IO[Any]) -> bool:
    """Whether ``stream`` is a terminal (and not closed or a fake)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@attrs.frozen
class Destination:
    """A checked ``--output``: standard output, or a file to write atomically.

    Build one with `Destination.check`, then write through `Destination.open`.
    """

    path: Path | None
    """The file, or `None` for standard output."""
    force: bool = False
    """Whether an existing file may be replaced."""
    replaced_mode: int | None = None
    """The permission bits of the file being replaced, which the new one keeps."""

    @classmethod
    def check(cls, output: str | None, *, force: bool, binary: bool = False) -> Destination:
        """Check ``--output`` without writing anything.

        Args:
            output: The ``--output`` value; `None` or ``-`` for standard output.
            force: Whether ``--force`` was given.
            binary: Whether the format is binary (Parquet), which needs a file.

        Raises:
            OutputError: The path is not a new path or a regular file, the file
                exists and ``force`` is not set, or the output is binary and
                would go to standard output.
        """
        if output is None or output == STDOUT:
            if binary:
                raise OutputError("this format is binary: pass --output FILE")
            return cls(None)
        if not output or output.endswith(("/", os.sep)):
            raise OutputError(f"--output {output!r} is not a file name")
        path = Path(output)
        try:
            status = os.lstat(path)
        except FileNotFoundError:
            if not path.parent.is_dir():
                raise OutputError(
                    f"cannot write --output {path}: directory {path.parent} does not exist"
                ) from None
            return cls(path, force)
        except OSError as exc:
            raise OutputError(f"cannot write --output {path}: {exc.strerror or exc}") from None
        mode = status.st_mode
        if stat.S_ISLNK(mode):
            raise OutputError(
                f"--output {path} is a symbolic link; name the file itself, or a new path"
            )
        if stat.S_ISDIR(mode):
            raise OutputError(f"--output {path} is a directory; name a file in it")
        if not stat.S_ISREG(mode):
            raise OutputError(
                f"--output {path} is {_kind(mode)}, not a regular file; "
                "to write there, leave out --output and redirect standard output"
            )
        if not force:
            raise OutputError(f"--output {path} already exists; pass --force to replace it")
        return cls(path, force, stat.S_IMODE(mode))

    def describe(self) -> str:
        """``standard output``, ``FILE (a new file)`` or ``FILE (replacing it)``."""
        if self.path is None:
            return "standard output"
        return f"{self.path} ({'a new file' if self.replaced_mode is None else 'replacing it'})"

    @contextlib.contextmanager
    def open(self, *, binary: bool = False) -> Iterator[IO[Any]]:
        """Open for writing; the file appears under its name only if the block succeeds.

        Standard output is yielded as it is (text; never closed).

        Raises:
            OutputError: The temporary file cannot be created, or a file
                appeared at the path meanwhile (without ``force``).
        """
        if self.path is None:
            yield sys.stdout
            return
        descriptor, temporary = self._create_temporary()
        try:
            stream: IO[Any] = (
                os.fdopen(descriptor, "wb")
                if binary
                else os.fdopen(descriptor, "w", encoding="utf-8", newline="")
            )
        except BaseException:
            os.close(descriptor)
            _remove(temporary)
            raise
        try:
            with stream:
                yield stream
                stream.flush()
                # On disk before the rename: a crash then leaves the old file or
                # the whole new one, never a renamed but empty one.
                os.fsync(stream.fileno())
            self._publish(temporary)
        except BaseException:
            _remove(temporary)
            raise

    def _create_temporary(self) -> tuple[int, Path]:
        assert self.path is not None
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        while True:
            candidate = self.path.with_name(f"{self.path.name}.{secrets.token_hex(4)}.part")
            try:
                # O_EXCL: a fresh file of our own, never one (or a link) planted there.
                descriptor = os.open(candidate, flags, 0o666)
            except FileExistsError:
                continue
            except OSError as exc:
                raise OutputError(
                    f"cannot write --output {self.path}: {exc.strerror or exc}"
                ) from None
            if self.replaced_mode is not None:
                os.fchmod(descriptor, self.replaced_mode)
            return descriptor, candidate

    def _publish(self, temporary: Path) -> None:
        assert self.path is not None
        if self.force:
            # A rename replaces the directory entry, whatever it is now: it never
            # writes into a device or through a link that appeared meanwhile.
            os.replace(temporary, self.path)
            return
        try:
            # Unlike a rename, a link fails if anything appeared at the path meanwhile.
            os.link(temporary, self.path)
        except FileExistsError:
            raise OutputError(
                f"--output {self.path} appeared while this ran; pass --force to replace it"
            ) from None
        except OSError:
            # A file system without hard links: check again, as close to the rename as can be.
            if os.path.lexists(self.path):
                raise OutputError(
                    f"--output {self.path} appeared while this ran; pass --force to replace it"
                ) from None
            os.replace(temporary, self.path)
            return
        _remove(temporary)


def refuse_checkpoint_as_output(output: str | None, checkpoint: Path) -> None:
    """Refuse an ``--output`` that is the checkpoint (or one of SQLite's files beside it).

    However the two are spelt (relative or absolute, through symbolic or hard
    links), writing the output there would destroy the checkpoint.

    Raises:
        OutputError: They are the same file.
    """
    if output is None or output == STDOUT or not output:
        return
    for suffix, what in _CHECKPOINT_FILES.items():
        if _same_file(Path(output), checkpoint.with_name(checkpoint.name + suffix)):
            raise OutputError(
                f"--output {output} is {what} ({checkpoint}{suffix}); writing the output "
                "there would destroy the checkpoint: name another --output"
            )


def _same_file(first: Path, second: Path) -> bool:
    try:
        return os.path.samestat(os.stat(first), os.stat(second))
    except OSError:
        # One of them does not exist (yet): compare where their names lead.
        return os.path.realpath(first) == os.path.realpath(second)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
