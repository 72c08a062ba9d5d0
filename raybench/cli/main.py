"""The root of the ``raybench`` command: it only wires the command groups together.

Each command module exposes ``register(app)`` and imports its heavy dependencies (Ray, torch,
polars) inside its commands, so that ``raybench --help`` and ``raybench validate`` stay fast.
"""

from __future__ import annotations

import typer

from raybench.cli import analyze, data, import_, plan, run, status, validate

app = typer.Typer(
    name="raybench",
    help="Trustworthy, reproducible benchmarks of deep-learning models on medical images.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

for _module in (validate, data, plan, run, status, analyze, import_):
    _module.register(app)
