"""What every command shares: the console, the ``--format`` option and error handling."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from raybench.errors import RaybenchError

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _user_error(exc: Exception) -> bool:
    """True for errors caused by the user's input: raybench's own and the analysis package's."""
    frames = sys.modules.get("raybench_analysis._frames")  # loaded whenever it raised
    return isinstance(exc, RaybenchError) or (
        frames is not None and isinstance(exc, frames.AnalysisError)
    )


def friendly_errors(func: F) -> F:
    """Turn a :class:`RaybenchError` or an analysis package's ``AnalysisError`` into its message
    on stderr and its exit code (2 for bad input).

    Set ``RAYBENCH_DEBUG=1`` to see the full traceback instead.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            if not _user_error(exc) or os.environ.get("RAYBENCH_DEBUG"):
                raise
            # markup=False: messages quote user text such as "[site]" that rich would eat.
            err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(getattr(exc, "exit_code", 2)) from None

    return wrapper  # type: ignore[return-value]
