"""The one error type that the CLI turns into a clean message and exit status 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: a config value, a path, a model name, a checkpoint.

    The message names the problem and what is allowed; the CLI prints it without a
    traceback and exits with status 2.
    """
