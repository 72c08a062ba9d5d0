"""``raybench validate SUITE`` and ``raybench schema``: check a suite, print its JSON Schema.

``validate`` writes nothing: it loads the suite (every problem located at file:line:col), says
which plugins the suite would import and run (refusing them under ``--no-plugins``), then, unless
``--no-data``, checks each dataset with :func:`raybench.data.check_dataset`. Exit code 0 when all
is well, 2 when anything is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from raybench.cli.common import JsonFlag, NoPluginsFlag, say
from raybench.cli.prepare import load_suite_checked
from raybench.errors import RaybenchError
from raybench.suite import Suite, SuiteValidationError, suite_dir, suite_json_schema
from raybench.suite.checks import search_points
from raybench.suite.loader import locate

NoDataFlag = Annotated[
    bool,
    typer.Option("--no-data", help="Check the suite only, not its datasets' files."),
]


def check_data(suite: Suite, suite_path: Path) -> dict[str, Any]:
    """Run ``raybench.data.check_dataset(spec, suite_dir, task=...)`` on every dataset of ``suite``.

    Returns ``{"checked": bool, "note": str | None, "errors": [...]}`` (each error: dataset,
    index, line, col in the suite, and the DataError's message); a missing
    ``check_dataset`` (older raybench.data) is a note, not an error.
    """
    try:
        from raybench.data import check_dataset
    except ImportError:
        note = "data checks skipped: raybench.data.check_dataset is not available in this version"
        return {"checked": False, "note": note, "errors": []}
    base = suite_dir(suite_path)
    errors = []
    for i, spec in enumerate(suite.datasets):
        try:
            check_dataset(spec, base, task=suite.task)
        except RaybenchError as exc:
            line, col = locate(suite_path, ("datasets", i)) or (None, None)
            errors.append(
                {"dataset": spec.name, "index": i, "line": line, "col": col, "error": str(exc)}
            )
    return {"checked": True, "note": None, "errors": errors}


def summarize(suite: Suite) -> dict[str, Any]:
    """Counts that tell the user what the suite will do (shown after a successful validation)."""
    points, _ = search_points(suite.model_dump())
    val = suite.validation
    return {
        "name": suite.name,
        "datasets": [d.name for d in suite.datasets],
        "task": suite.task.type,
        "label": suite.task.label,
        "models": [m.name for m in suite.models],
        "search_points": points,
        "seeds": len(suite.seeds),
        "protocols": ["outer", *(p.strategy for p in val.extra)],
        "outer": val.outer.strategy,
        "inner": val.inner.strategy if val.inner else None,
        "metrics": list(suite.evaluation.metrics),
        "perturbations": len(suite.evaluation.perturbations),
        "plugins": dict(suite.plugins),
    }


def _summary_line(path: Path, s: dict[str, Any]) -> str:
    inner = f", inner {s['inner']}" if s["inner"] else ", no inner protocol"
    extra = f" + {', '.join(s['protocols'][1:])}" if len(s["protocols"]) > 1 else ""
    return (
        f"{path}: suite {s['name']!r} is valid: {s['task']} of {s['label']!r}; "
        f"{len(s['datasets'])} dataset(s) ({', '.join(s['datasets'])}), "
        f"{len(s['models'])} model(s) ({', '.join(s['models'])}), "
        f"up to {s['search_points']} search point(s) per model, {s['seeds']} seed(s); "
        f"outer {s['outer']}{extra}{inner}"
    )


def validate(
    suite: Annotated[Path, typer.Argument(help="The suite YAML file.")],
    json_: JsonFlag = False,
    no_data: NoDataFlag = False,
    no_plugins: NoPluginsFlag = False,
) -> None:
    """Check SUITE: every problem with file:line:col, key path, what is allowed. Writes nothing.

    A suite that names plugins is code: the plugins it would import and run are listed.
    Exit code 0 if the suite (and, unless --no-data, its datasets) is valid, 2 otherwise.
    """
    try:
        loaded, plugins = load_suite_checked(suite, no_plugins)
    except SuiteValidationError as exc:
        if not json_:
            raise
        problems = [p.to_dict() for p in exc.problems]
        typer.echo(json.dumps({"suite": str(suite), "valid": False, "problems": problems}))
        raise typer.Exit(exc.exit_code) from None

    data = {"checked": False, "note": "data checks skipped (--no-data)", "errors": []}
    if not no_data:
        data = check_data(loaded, suite)
    summary = summarize(loaded)
    valid = not data["errors"]
    if json_:
        out = {"suite": str(suite), "valid": valid, "problems": [], "summary": summary}
        typer.echo(json.dumps({**out, "data": data}))
    else:
        for err in data["errors"]:
            where = f"{suite}:{err['line']}:{err['col']}: " if err["line"] else f"{suite}: "
            say(f"error: {where}datasets[{err['index']}] ({err['dataset']!r}): {err['error']}",
                stderr=True)  # fmt: skip
        if data["note"]:
            say(data["note"])
        if valid:
            say(_summary_line(suite, summary))
        if plugins:
            say(plugins)
    if not valid:
        raise typer.Exit(2)


def schema() -> None:
    """Print the JSON Schema of a suite (for editor completion and validation)."""
    typer.echo(json.dumps(suite_json_schema(), indent=2))


def register(app: typer.Typer) -> None:
    """Add ``validate`` and ``schema`` to the root command."""
    app.command("validate")(validate)
    app.command("schema")(schema)
