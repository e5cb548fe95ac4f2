"""The two ways a command fails, and their exit codes (documented in the README)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_USAGE = 2  # bad input: one clear line on stderr, nothing started
EXIT_RUN_FAILED = 3  # a run failed: the results folder says which and why


class UsageError(Exception):
    """Bad input from the user: an option, a scenario file, a target."""


class RunFailed(Exception):
    """A run could not produce a valid measurement (server died, worker failed, unfair server)."""
