"""``raybench import FORMAT SOURCE --results DIR``: bring existing results in (docs/import.md).

A thin command over :func:`raybench.importers.import_results`: it parses the mapping options,
checks that each applies to the format given, and prints what was imported, the leakage verdict
and the notes (rows that found no participant, values left out).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from raybench.cli.common import JsonFlag, console
from raybench.errors import DataError

#: Options that only some formats read: option name -> formats.
_FORMAT_OPTIONS = {
    "--columns": ("table",),
    "--mapping": ("table",),
    "--labels": ("table",),
    "--task": ("table",),
    "--dataset": ("clinicadl", "nnunet"),
    "--positive": ("clinicadl",),
    "--validation-as-test": ("clinicadl",),
    "--splits": ("nnunet",),
}


def _pairs(text: str | None, option: str) -> dict[str, str]:
    """``a=b,c=d`` -> ``{"a": "b", "c": "d"}``; a malformed entry is a located error."""
    if not text:
        return {}
    out: dict[str, str] = {}
    for entry in text.split(","):
        key, sep, value = entry.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise DataError(f"{option} {text!r}: entry {entry!r} is not NAME=VALUE")
        out[key.strip()] = value.strip()
    return out


def _mapping_file(path: Path) -> dict[str, Any]:
    """A YAML mapping file (safely loaded): ``columns:``, ``labels:``, ``task:``, or a flat
    ``target: source`` mapping."""
    import yaml

    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"--mapping {path}: unreadable YAML ({exc})") from None
    if not isinstance(content, dict):
        raise DataError(f"--mapping {path}: expected a mapping of target: source column")
    if "columns" not in content:
        content = {"columns": content}
    unknown = sorted(set(content) - {"columns", "labels", "task"})
    if unknown:
        raise DataError(f"--mapping {path}: unknown keys {unknown}; allowed columns, labels, task")
    for key in ("columns", "labels"):
        if not isinstance(content.get(key) or {}, dict):
            raise DataError(f"--mapping {path}: {key!r} must be a mapping")
    return content


def _labels(raw: dict[str, str]) -> dict[str, int]:
    try:
        return {k: int(v) for k, v in raw.items()}
    except ValueError:
        raise DataError(f"--labels {raw}: each label needs a class index (CN=0,AD=1)") from None


def _print(report: Any) -> None:
    console.print(
        f"imported {report.trials} trial(s) from {report.format} source {report.source} into "
        f"{report.results}: {report.committed} committed, {report.unchanged} unchanged, "
        f"{report.removed} removed ({report.predictions} prediction rows)",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"models: {', '.join(report.models)}", highlight=False, soft_wrap=True)
    console.print(f"leakage check: {report.leakage}", highlight=False, soft_wrap=True)
    why = "" if "site" in report.hierarchy else " (some predictions have no site)"
    console.print(
        f"analysis hierarchy: {', '.join(report.hierarchy)}{why}", highlight=False, soft_wrap=True
    )
    for note in report.notes:
        console.print(f"  - {note}", highlight=False, soft_wrap=True)
    console.print(f"next: raybench analyze {report.results}", highlight=False, soft_wrap=True)


def import_(
    fmt: Annotated[str, typer.Argument(metavar="FORMAT", help="table, clinicadl or nnunet.")],
    source: Annotated[
        Path, typer.Argument(help="Predictions file, MAPS folder or nnU-Net folder.")
    ],
    results: Annotated[
        str, typer.Option("--results", help="Results directory to write (new or an import).")
    ],
    participants: Annotated[
        Path | None,
        typer.Option(
            "--participants",
            help="TSV/CSV: participant_id [session_id|case_id] site "
            "scanner, joined when the source lacks them.",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Model name (prefix) of the imported models.")
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option("--columns", help="table: target=source,... (y_true=label,score=prob_ad)."),
    ] = None,
    mapping: Annotated[
        Path | None,
        typer.Option("--mapping", help="table: YAML file with columns:, labels:, task:."),
    ] = None,
    labels: Annotated[
        str | None, typer.Option("--labels", help="table: text labels to classes (CN=0,AD=1).")
    ] = None,
    task: Annotated[
        str | None, typer.Option("--task", help="table: classification, regression, segmentation.")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="clinicadl/nnunet: dataset name.")
    ] = None,
    positive: Annotated[
        str | None, typer.Option("--positive", help="clinicadl: the positive class (AD).")
    ] = None,
    validation_as_test: Annotated[
        bool,
        typer.Option(
            "--validation-as-test",
            help="clinicadl: score the validation group as test "
            "(optimistic: the epoch was selected on it).",
        ),
    ] = False,
    splits: Annotated[
        Path | None, typer.Option("--splits", help="nnunet: splits_final.json of the dataset.")
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace an earlier import of a changed source.")
    ] = False,
    json_: JsonFlag = False,
) -> None:
    """Import FORMAT results at SOURCE into a raybench results directory.

    Trials are committed atomically and idempotently (importing the same source again changes
    nothing; a changed source needs --replace). Exit code 2 with the file, line and column of
    anything that cannot be imported, or when a subject was both trained and tested on.
    """
    from raybench.importers import FORMATS, import_results

    if fmt not in FORMATS:
        raise DataError(f"FORMAT {fmt!r} is not one of {list(FORMATS)}")
    given = {
        "--columns": columns, "--mapping": mapping, "--labels": labels, "--task": task,
        "--dataset": dataset, "--positive": positive,
        "--validation-as-test": validation_as_test or None, "--splits": splits,
    }  # fmt: skip
    for option, value in given.items():
        if value is not None and fmt not in _FORMAT_OPTIONS[option]:
            formats = " and ".join(_FORMAT_OPTIONS[option])
            raise DataError(f"{option} applies to the {formats} format(s), not {fmt}")
    options: dict[str, Any] = {}
    if fmt == "table":
        spec = _mapping_file(mapping) if mapping is not None else {"columns": {}}
        options["mapping"] = {**(spec.get("columns") or {}), **_pairs(columns, "--columns")}
        label_map = {**(spec.get("labels") or {}), **_pairs(labels, "--labels")}
        options["labels"] = _labels({str(k): str(v) for k, v in label_map.items()}) or None
        options["task"] = task or spec.get("task")
    elif fmt == "clinicadl":
        options |= {"dataset": dataset, "positive": positive}
        options["validation_as_test"] = validation_as_test
    else:
        options |= {"dataset": dataset, "splits": splits}
    report = import_results(
        fmt, source, results, participants=participants, name=name, replace=replace,
        options=options,
    )  # fmt: skip
    if json_:
        print(json.dumps(report.to_dict(), default=str))
    else:
        _print(report)


def register(app: typer.Typer) -> None:
    """Add ``raybench import`` to the root command."""
    app.command("import")(import_)
