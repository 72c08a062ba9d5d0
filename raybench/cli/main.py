"""The root of the ``raybench`` command: the command groups, ``--version``, ``--debug`` and the
one error boundary.

Each command module exposes ``register(app)`` and imports its heavy dependencies (Ray, torch,
polars, the analysis package) inside its commands, so that ``raybench --help`` and
``raybench validate`` stay fast. A user error raised anywhere below (:class:`RaybenchError`, or
the analysis package's :class:`raybench_analysis.AnalysisError`) is caught once, here: its
message goes to stderr and the command exits with status 2 (the error's ``exit_code``).
``--debug`` or ``RAYBENCH_DEBUG=1`` lets the traceback through instead.
"""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup

from raybench.cli import analyze, data, import_, plan, predict, report, run, status, validate
from raybench.cli import compact as compact_cmd
from raybench.cli.common import say
from raybench.errors import RaybenchError

_DEBUG = "raybench.debug"


class RaybenchGroup(TyperGroup):
    """The root command group: turns user errors into a message and an exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a user error becomes ``error: <message>`` on stderr and exit 2."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            from raybench_analysis import AnalysisError

            if not isinstance(exc, RaybenchError | AnalysisError):
                raise
            if ctx.meta.get(_DEBUG) or os.environ.get("RAYBENCH_DEBUG"):
                raise
            say(f"error: {exc}", stderr=True)
            raise typer.Exit(exc.exit_code) from None


def _versions() -> str:
    parts = []
    for dist in ("raybench", "raybench-analysis"):
        try:
            parts.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            parts.append(f"{dist} (not installed)")
    return ", ".join(parts)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(_versions())
        raise typer.Exit()


app = typer.Typer(
    name="raybench",
    help="Trustworthy, reproducible benchmarks of deep-learning models on medical images.",
    cls=RaybenchGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def root(
    ctx: typer.Context,
    debug: Annotated[
        bool,
        typer.Option("--debug", help="Show the full traceback of an error (or RAYBENCH_DEBUG=1)."),
    ] = False,
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_version,
            help="Print the versions of raybench and raybench-analysis, then exit.",
        ),
    ] = False,
) -> None:
    """Trustworthy, reproducible benchmarks of deep-learning models on medical images."""
    ctx.meta[_DEBUG] = debug


for _module in (validate, data, plan, run, status, analyze, import_, report):
    _module.register(app)
predict.register(app)
compact_cmd.register(app)
