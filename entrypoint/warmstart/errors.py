"""Errors a user can cause, each with the exit code the README documents.

They are caught once, in the CLI, and printed as a single line; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Base for problems a user can fix; ``exit_code`` is what the process exits with."""

    exit_code = 1


class ConfigError(UserError):
    """A bad environment variable or flag (exit 2)."""

    exit_code = 2


class SnapshotError(UserError):
    """A snapshot that is missing, corrupt, unsafe or does not fit the configured model (exit 3)."""

    exit_code = 3


class VolumeError(UserError):
    """The checkpoint folder is missing, read-only or full (exit 4)."""

    exit_code = 4
