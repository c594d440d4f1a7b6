"""User-facing errors: the CLI prints their message on one line and exits with code 2."""


class CmrsegError(Exception):
    """A mistake in the user's input (file, config key, value) rather than a bug in cmrseg."""
