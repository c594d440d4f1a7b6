"""User-facing errors: the CLI prints their message on one line and exits with code 2."""

from __future__ import annotations


class CmrsegError(Exception):
    """A mistake in the user's input (file, config key, value) rather than a bug in cmrseg.

    The message speaks library terms; ``key`` names the library parameter it is about (``epochs``, ``workers``),
    so that the command line can say which flag sets it (its ``error_text``)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key
