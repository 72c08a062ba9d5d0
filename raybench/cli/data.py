"""``raybench data``: generate a synthetic cohort (``synth``) and validate a dataset (``check``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from raybench.cli.common import JsonFlag, console
from raybench.errors import DataError
from raybench.suite.schema import ColumnMap, SyntheticParams, Task

data_app = typer.Typer(
    name="data",
    help="Generate synthetic cohorts and validate datasets.",
    no_args_is_help=True,
)

_DEFAULTS = SyntheticParams()


def _validation_message(exc: ValidationError, what: str) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"])
        lines.append(f"{what} {key}={error.get('input')!r}: {error['msg']}")
    return "\n".join(lines)


def _summary(table: Any) -> dict[str, int]:
    return {
        "images": table.height,
        "subjects": table["subject_id"].n_unique(),
        "sessions": table["session_id"].n_unique(),
        "sites": table["site"].n_unique(),
        "scanners": table["scanner"].n_unique(),
    }


@data_app.command("synth")
def synth(
    out: Annotated[Path, typer.Argument(help="Output directory (must be new or empty).")],
    sites: Annotated[int, typer.Option(help="Acquisition sites.")] = _DEFAULTS.sites,
    scanners_per_site: Annotated[int, typer.Option(help="Scanners per site.")] = (
        _DEFAULTS.scanners_per_site
    ),
    subjects: Annotated[int, typer.Option(help="Subjects in total.")] = _DEFAULTS.subjects,
    sessions: Annotated[int, typer.Option(help="Sessions per subject.")] = _DEFAULTS.sessions,
    shape: Annotated[tuple[int, int, int], typer.Option(help="Volume shape X Y Z.")] = (
        _DEFAULTS.shape
    ),
    effect: Annotated[float, typer.Option(help="Disease effect (0 = no signal).")] = (
        _DEFAULTS.effect
    ),
    site_shift: Annotated[float, typer.Option(help="Site/scanner intensity shift SD.")] = (
        _DEFAULTS.site_shift
    ),
    noise: Annotated[float, typer.Option(help="Noise SD relative to white matter.")] = (
        _DEFAULTS.noise
    ),
    prevalence: Annotated[float, typer.Option(help="Fraction of AD subjects.")] = (
        _DEFAULTS.prevalence
    ),
    seed: Annotated[int, typer.Option(help="Generator seed.")] = _DEFAULTS.seed,
    as_json: JsonFlag = False,
) -> None:
    """Write a synthetic cohort of brain phantoms (real .nii.gz) and its manifest.tsv."""
    from raybench.data import generate_cohort, synthetic_table
    from raybench.data.fingerprint import synthetic_fingerprint

    try:
        params = SyntheticParams(
            sites=sites,
            scanners_per_site=scanners_per_site,
            subjects=subjects,
            sessions=sessions,
            shape=shape,
            effect=effect,
            site_shift=site_shift,
            noise=noise,
            prevalence=prevalence,
            seed=seed,
        )
    except ValidationError as exc:
        raise DataError(_validation_message(exc, "option")) from None
    start = time.perf_counter()
    manifest = generate_cohort(out, params)
    seconds = time.perf_counter() - start
    table = synthetic_table(params, manifest.parent)
    report = {
        "manifest": str(manifest),
        "fingerprint": synthetic_fingerprint(params),
        "seconds": round(seconds, 3),
        **_summary(table),
    }
    if as_json:
        print(json.dumps(report))
        return
    console.print(
        f"wrote {report['images']} images of {report['subjects']} subjects "
        f"({report['sites']} sites, {report['scanners']} scanners) in {seconds:.1f} s\n"
        f"manifest: {manifest}"
    )


def _column_map(pairs: list[str]) -> ColumnMap:
    mapping = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not value:
            raise DataError(f"--column {pair!r}: expected KEY=NAME, e.g. --column subject_id=RID")
        mapping[key.strip()] = value.strip()
    try:
        return ColumnMap(**mapping)
    except ValidationError as exc:
        allowed = ", ".join(ColumnMap.model_fields)
        raise DataError(f"{_validation_message(exc, '--column')} (keys: {allowed})") from None


@data_app.command("check")
def check(
    path: Annotated[Path, typer.Argument(help="A manifest (TSV/CSV) or a BIDS/CAPS root.")],
    pattern: Annotated[
        str | None, typer.Option(help="Image pattern of a BIDS/CAPS tree ({subject}, {session}).")
    ] = None,
    column: Annotated[
        list[str] | None, typer.Option(help="Column map entry KEY=NAME (repeatable).")
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(help="Also check for a task: classification/regression/segmentation."),
    ] = None,
    label: Annotated[str, typer.Option(help="Label column of the task.")] = "label",
    classes: Annotated[
        list[str] | None, typer.Option("--class", help="Allowed class (repeatable).")
    ] = None,
    positive: Annotated[str | None, typer.Option(help="Positive class.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Validate a dataset without writing anything; exit 2 and name file/row/column on error."""
    from raybench.data import check_cohort, check_task
    from raybench.data.bids import DEFAULT_PATTERN, read_bids_table
    from raybench.data.manifest import read_manifest_table

    columns = _column_map(column or [])
    if path.is_dir():
        if "subject_id" not in columns.model_fields_set:
            columns = columns.model_copy(update={"subject_id": "participant_id"})
        cohort = read_bids_table(path, pattern or DEFAULT_PATTERN, columns)
    else:
        cohort = read_manifest_table(path, columns)
    check_cohort(cohort)
    if task is not None:
        try:
            spec = Task(type=task, label=label, classes=classes or None, positive=positive)
        except ValidationError as exc:
            raise DataError(_validation_message(exc, "--task")) from None
        check_task(cohort, spec)
    report = {"source": cohort.source, "ok": True, **_summary(cohort.table)}
    if as_json:
        print(json.dumps(report))
        return
    console.print(
        f"ok: {report['images']} images, {report['subjects']} subjects, {report['sites']} sites, "
        f"{report['scanners']} scanners ({cohort.source})"
    )


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to the root app."""
    app.add_typer(data_app, name="data")
