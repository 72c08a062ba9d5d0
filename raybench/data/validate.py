"""Validation of cohorts before any trial runs: every problem named by file, row and column.

:func:`check_cohort` checks what every cohort needs (columns, non-empty ids, unique sample ids, one
site per subject, readable 3-D NIfTI images from their headers alone); :func:`check_task` checks
that the cohort can serve a task (label column, classes, numeric target, masks on the image grid).
Both collect all problems and raise one :class:`~raybench.errors.DataError` listing them.
"""

from __future__ import annotations

import difflib
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence

import polars as pl

from raybench.data.cohort import REQUIRED_COLUMNS, Cohort
from raybench.data.nifti import nifti_problem
from raybench.errors import DataError
from raybench.suite.schema import Task

__all__ = ["check_cohort", "check_task", "did_you_mean", "raise_problems"]

MAX_LISTED = 20  # problems printed in one error
MAX_ROWS = 5  # rows listed for one kind of problem in one column


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest candidate, or ``""``."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def raise_problems(cohort_name: str, problems: Sequence[str]) -> None:
    """Raise one :class:`DataError` listing ``problems`` (at most :data:`MAX_LISTED`), if any."""
    if not problems:
        return
    listed = list(problems[:MAX_LISTED])
    if len(problems) > MAX_LISTED:
        listed.append(f"... and {len(problems) - MAX_LISTED} more")
    noun = "problem" if len(problems) == 1 else "problems"
    raise DataError(
        f"dataset {cohort_name!r}: {len(problems)} {noun}:\n  - " + "\n  - ".join(listed)
    )


def _empty_rows(table: pl.DataFrame, column: str) -> list[int]:
    values = table[column].cast(pl.String)
    mask = values.is_null() | (values.str.strip_chars() == "")
    return mask.arg_true().to_list()


def _rows_problem(cohort: Cohort, indices: list[int], column: str, what: str) -> list[str]:
    shown = [f"{cohort.where(i, column)}: {what}" for i in indices[:MAX_ROWS]]
    if len(indices) > MAX_ROWS:
        shown.append(f"{cohort.where(None, column)}: ... and {len(indices) - MAX_ROWS} more rows")
    return shown


def _check_files(cohort: Cohort, column: str, seen: dict[str, tuple]) -> list[str]:
    problems = []
    for i, value in enumerate(cohort.table[column].to_list()):
        if value is None or value == "":
            continue
        if value not in seen:
            seen[value] = nifti_problem(value)
        problem = seen[value][1]
        if problem is not None:
            problems.append(f"{cohort.where(i, column)}: {value}: {problem}")
    return problems


def check_cohort(cohort: Cohort, *, files: bool = True) -> None:
    """Check the columns, ids and (if ``files``) image files of ``cohort``; raise DataError.

    Checks: the :data:`REQUIRED_COLUMNS` exist and have no empty value; ``sample_id`` is unique;
    each subject is at one site; each ``image`` (and each non-empty ``mask``) is a readable 3-D
    NIfTI file, judged from its header only.
    """
    table = cohort.table
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise_problems(
            cohort.name,
            [
                f"{cohort.where(None, c)}: required column missing"
                f"{did_you_mean(c, table.columns)}; columns found: {table.columns}"
                for c in missing
            ],
        )
    problems: list[str] = []
    for column in REQUIRED_COLUMNS:
        rows = _empty_rows(table, column)
        problems += _rows_problem(cohort, rows, column, "empty value; every row needs one")

    seen_at: dict[str, list[int]] = defaultdict(list)
    for i, sample in enumerate(table["sample_id"].to_list()):
        seen_at[sample].append(i)
    for sample, indices in seen_at.items():
        if sample and len(indices) > 1:
            rows = ", ".join(cohort.where(i).split(", ")[-1] for i in indices[:MAX_ROWS])
            problems.append(
                f"{cohort.where(indices[1], 'sample_id')}: duplicate sample id {sample!r} "
                f"({rows}); each image needs a unique (subject, session) or sample_id"
            )

    first_site: dict[str, tuple[str, int]] = {}
    reported: set[str] = set()
    for i, (subject, site) in enumerate(table.select("subject_id", "site").iter_rows()):
        if subject not in first_site:
            first_site[subject] = (site, i)
        elif site != first_site[subject][0] and subject not in reported:
            reported.add(subject)
            other_site, j = first_site[subject]
            problems.append(
                f"{cohort.where(i, 'site')}: subject {subject!r} is at site {site!r} here but at "
                f"site {other_site!r} in {cohort.where(j).split(', ')[-1]}; a subject belongs to "
                "one site (fix the site, or give the two people different subject ids)"
            )

    if files:
        seen: dict[str, tuple] = {}
        problems += _check_files(cohort, "image", seen)
        if "mask" in table.columns:
            problems += _check_files(cohort, "mask", seen)
    raise_problems(cohort.name, problems)


def _check_classification(cohort: Cohort, task: Task) -> list[str]:
    label = task.label
    values = cohort.table[label].cast(pl.String).to_list()
    problems = _rows_problem(
        cohort, _empty_rows(cohort.table, label), label, "empty label; every image needs a class"
    )
    if task.classes is not None:
        outside = [i for i, v in enumerate(values) if v not in (None, "") and v not in task.classes]
        for value in sorted({values[i] for i in outside}):
            rows = [i for i in outside if values[i] == value]
            problems += _rows_problem(
                cohort,
                rows,
                label,
                f"label {value!r} is not in task.classes {task.classes}"
                f"{did_you_mean(value, task.classes)}; add it to task.classes or drop these rows",
            )
        if task.positive is not None and task.positive not in task.classes:
            problems.append(
                f"task.positive {task.positive!r} is not in task.classes {task.classes}"
                f"{did_you_mean(task.positive, task.classes)}"
            )
    present = sorted({v for v in values if v not in (None, "")})
    if task.positive is not None and task.positive not in present:
        problems.append(
            f"{cohort.where(None, label)}: task.positive {task.positive!r} never occurs; "
            f"values found: {present[:10]}{did_you_mean(task.positive, present)}"
        )
    if len(present) < 2:
        problems.append(
            f"{cohort.where(None, label)}: classification needs at least 2 classes, found {present}"
        )
    return problems


def _check_regression(cohort: Cohort, task: Task) -> list[str]:
    label = task.label
    bad: dict[str, list[int]] = defaultdict(list)
    for i, value in enumerate(cohort.table[label].cast(pl.String).to_list()):
        if value is None or value.strip() == "":
            bad["empty target; every image needs a value"].append(i)
            continue
        try:
            number = float(value)
        except ValueError:
            bad[f"target {value!r} is not a number"].append(i)
            continue
        if not math.isfinite(number):
            bad[f"target {value!r} is not finite"].append(i)
    problems = []
    for what, rows in bad.items():
        problems += _rows_problem(cohort, rows, label, f"{what} (regression needs numbers)")
    return problems


def _check_segmentation(cohort: Cohort, task: Task, files: bool) -> list[str]:
    label = task.label
    table = cohort.table
    problems = _rows_problem(
        cohort, _empty_rows(table, label), label, "no mask; segmentation needs one per image"
    )
    if table[label].dtype != pl.String:
        return [f"{cohort.where(None, label)}: holds {table[label].dtype}, not mask file paths"]
    shapes: dict[str, tuple] = {}
    for i, (image, mask) in enumerate(table.select("image", label).iter_rows()):
        if not mask:
            continue
        if not os.path.isabs(mask):
            problems.append(
                f"{cohort.where(i, label)}: mask path {mask!r} was not resolved; name the mask "
                "column with columns.mask (its paths are read relative to the manifest) and use "
                "task.label: mask"
            )
            continue
        if not files:
            continue
        for path in (image, mask):
            if path not in shapes:
                shapes[path] = nifti_problem(path)
        mask_shape, problem = shapes[mask]
        image_shape = shapes[image][0]
        if problem is not None:
            problems.append(f"{cohort.where(i, label)}: {mask}: {problem}")
        elif image_shape is not None and mask_shape != image_shape:
            problems.append(
                f"{cohort.where(i, label)}: mask shape {mask_shape} differs from image shape "
                f"{image_shape}; masks must be on the image's voxel grid (resample the mask)"
            )
    return problems


def check_task(cohort: Cohort, task: Task, *, files: bool = True) -> None:
    """Check that ``cohort`` can serve ``task``; raise one DataError listing every problem.

    Classification: the label column exists, has no empty cell, its values lie in
    ``task.classes`` (when declared), ``task.positive`` occurs, and there are at least two classes.
    Regression: every target parses as a finite number. Segmentation: every image has a mask, and
    (if ``files``) the mask is a readable 3-D NIfTI with the image's shape.
    """
    columns = cohort.table.columns
    if task.label not in columns:
        raise_problems(
            cohort.name,
            [
                f"{cohort.where(None, task.label)}: column named by task.label not found"
                f"{did_you_mean(task.label, columns)}; columns found: {columns}"
            ],
        )
    if task.type == "classification":
        problems = _check_classification(cohort, task)
    elif task.type == "regression":
        problems = _check_regression(cohort, task)
    else:
        problems = _check_segmentation(cohort, task, files)
    raise_problems(cohort.name, problems)
