"""The exceptions raybench raises for bad input, in one place.

Every user-facing error is a :class:`RaybenchError`; the CLI prints its message (no traceback unless
``--debug``) and exits with :attr:`RaybenchError.exit_code`. Messages say what was found, where
(file, line, key or row), what is allowed, and how to fix it.
"""

from __future__ import annotations


class RaybenchError(Exception):
    """Base of all errors caused by the user's input rather than by a bug."""

    exit_code: int = 2


class SuiteError(RaybenchError):
    """The suite file is malformed or violates the schema (may hold several problems)."""


class DataError(RaybenchError):
    """A dataset is missing, unreadable, inconsistent or unsuitable for the task."""


class LeakageError(RaybenchError):
    """A subject (or, for site protocols, a site) ended on both sides of a split."""


class ResultsError(RaybenchError):
    """A results directory is missing, locked by another run, or inconsistent."""


class StorageError(ResultsError):
    """The results directory cannot be written: read-only, no permission, or the disk is full.

    Never a model's failure: a trial cut off by it is left uncommitted and redone on resume.
    """


class TrialError(RaybenchError):
    """A trial failed (non-finite loss, crash); recorded as a failed row, not raised to the user."""
