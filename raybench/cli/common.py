"""What every command shares: the console, the ``--format`` option and error handling."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from raybench.errors import RaybenchError

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def friendly_errors(func: F) -> F:
    """Turn a :class:`RaybenchError` into its message on stderr and its exit code.

    Set ``RAYBENCH_DEBUG=1`` to see the full traceback instead.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RaybenchError as exc:
            if os.environ.get("RAYBENCH_DEBUG"):
                raise
            # markup=False: messages quote user text such as "[site]" that rich would eat.
            err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]
