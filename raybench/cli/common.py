"""What every command shares: the consoles and the options that mean the same everywhere.

Errors are not handled here: the root app (:mod:`raybench.cli.main`) is the one error boundary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)

JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print machine-readable JSON on stdout instead of text.")
]

DataRootOption = Annotated[
    Path | None,
    typer.Option(
        "--data-root",
        help="Where synthetic cohorts are (or will be) generated; default ./.raybench-data.",
    ),
]

CacheDirOption = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        help="Folder of the decoded-volume cache, the same for every node; default: each node's "
        "own ($RAYBENCH_CACHE_DIR, else raybench-cache in the node's temporary folder).",
    ),
]

NoPluginsFlag = Annotated[
    bool,
    typer.Option(
        "--no-plugins",
        help="Refuse a suite that names plugins (a plugin is code that raybench imports and "
        "runs): use it for suites from others.",
    ),
]


def say(text: str, *, stderr: bool = False) -> None:
    """Print ``text`` as it is (no rich markup or highlighting: messages quote user text)."""
    (err_console if stderr else console).print(text, markup=False, highlight=False, soft_wrap=True)
