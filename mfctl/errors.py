"""One exception family for everything mfctl reports to a user.

Domain code raises these; only ``mfctl.cli`` prints them (one line, stderr) and exits.
``BadInput`` means the user gave something wrong (exit 2, nothing was started);
``OperationFailed`` means a well-formed request failed while running (exit 1).
"""

from __future__ import annotations


class MfctlError(Exception):
    """Base of the errors mfctl reports as one line without a traceback."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class BadInput(MfctlError):
    """The user's input is wrong: file, line, host or rank named in the message. Exit 2."""

    exit_code = 2


class OperationFailed(MfctlError):
    """A well-formed operation failed (a node refused, a process died). Exit 1."""

    exit_code = 1
