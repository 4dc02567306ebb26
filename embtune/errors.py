"""The one exception type embtune raises for bad user input."""

from __future__ import annotations


class EmbtuneError(Exception):
    """A problem with the user's input (file, flag, model path) explained in plain words.

    The CLI prints the message and exits with status 2 instead of a traceback.
    """


def located(path: object, line: int | None, message: str) -> EmbtuneError:
    """An error that names the file and (when known) the 1-based line."""
    where = f"{path}:{line}" if line is not None else f"{path}"
    return EmbtuneError(f"{where}: {message}")
