"""Error types shared by every layer.

Front ends turn these into one-line messages and exit codes; nothing else should reach a user.
"""

from __future__ import annotations


class MeshreadyError(Exception):
    """Base class: an expected failure with a message fit for a person."""

    exit_code = 1

    def one_line(self) -> str:
        return " ".join(str(self).split())


class InputError(MeshreadyError):
    """Bad input: a file, an option or a value that cannot be used. Exit code 2."""

    exit_code = 2

    def __init__(self, source: str, message: str, line: int | None = None) -> None:
        self.source = source
        self.message = message
        self.line = line
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {message}")


class ActionError(MeshreadyError):
    """A change to a node could not be made; the node was left as it was. Exit code 1."""

    exit_code = 1
