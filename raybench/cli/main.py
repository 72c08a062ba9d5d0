"""The root of the ``raybench`` command: it only wires the command groups together."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="raybench",
    help="Trustworthy, reproducible benchmarks of deep-learning models on medical images.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Each command module exposes ``register(app)``; add one line per module.
from raybench.cli import plan as _plan  # noqa: E402

_plan.register(app)
from raybench.cli import validate as _validate  # noqa: E402

_validate.register(app)
from raybench.cli import analyze as _analyze  # noqa: E402

_analyze.register(app)
from raybench.cli import data as _data  # noqa: E402

_data.register(app)
from raybench.cli import run as _run  # noqa: E402

_run.register(app)
from raybench.cli import status as _status  # noqa: E402

_status.register(app)
