"""``table``: any CSV/TSV/Parquet of per-sample predictions, with a column mapping.

The mapping names, for contract columns of ``predictions`` (docs/results.md), the source column
that holds them: ``y_true=label,score=prob_ad,model=method,outer_fold=fold``. A contract column the
mapping does not name is taken from a source column of the same name when there is one, so a
table exported from a raybench results directory imports with no mapping at all. ``probs`` may
name several columns joined by ``+`` (``probs=p_cn+p_ad``). ``split`` (optional) holds each row's
role: ``test``, ``val`` (or ``validation``) or ``train``; ``train`` rows go to the ``splits`` audit
trail only, and with a ``split`` column the contract's leakage check runs on the table.

Rows are grouped into trials by ``dataset, model, protocol, outer_fold, seed``; a column not
mapped takes a constant (``dataset``: the file's stem; ``model``: ``--name``; ``protocol``:
``outer``; ``outer_fold`` and ``seed``: 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl
from raybench_analysis.contract import CONTRACT
from raybench_analysis.vocabulary import TASK_TYPES

from raybench.importers.base import (
    FILE,
    LINE,
    ImportedTrial,
    ImportSource,
    JoinNotes,
    Participants,
    SourceError,
    cast_number,
    did_you_mean,
    hash_files,
    located,
    read_delimited,
    with_lines,
)

__all__ = ["TARGETS", "read_table_source"]

#: The contract columns a mapping may name (the predictions table's, less ``trial_id``).
TARGETS: tuple[str, ...] = tuple(n for n in CONTRACT["predictions"].names if n != "trial_id")

_TRIAL_KEYS = ("dataset", "model", "protocol", "outer_fold", "seed")
_NUMBERS = ("y_true", "y_pred", "score", "dice", "loss", "severity")
_ROLES = {"test": "test", "val": "val", "validation": "val", "train": "train"}


def _read(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            frame = pl.read_parquet(path)
        except (pl.exceptions.ComputeError, OSError) as exc:
            raise located(path, None, None, f"unreadable as Parquet ({exc})") from None
        return with_lines(frame, path, first_line=1)
    return read_delimited(path)


def _resolve_mapping(frame: pl.DataFrame, mapping: Mapping[str, str], path: Path) -> dict[str, Any]:
    """target -> source column(s): explicit entries checked, same-name columns (not all empty)
    added."""
    columns = [c for c in frame.columns if c not in (FILE, LINE)]
    resolved: dict[str, Any] = {}
    for target, source in mapping.items():
        if target not in TARGETS:
            raise SourceError(
                f"mapping {target}={source}: {target!r} is not a predictions column"
                + did_you_mean(target, TARGETS)
            )
        names = source.split("+") if target == "probs" else [source]
        for name in names:
            if name not in columns:
                raise located(
                    path,
                    1,
                    name,
                    f"mapping {target}={source}: no such column" + did_you_mean(name, columns),
                )
        resolved[target] = names if target == "probs" else source
    for target in TARGETS:
        implicit = target in columns and frame.get_column(target).null_count() < frame.height
        if target not in resolved and implicit:
            resolved[target] = [target] if target == "probs" else target
    return resolved


def _labels(
    frame: pl.DataFrame,
    column: str,
    source: str,
    labels: Mapping[str, int] | None,
    n_classes: int,
) -> pl.Series:
    """The class index of each row: through ``labels`` when given, else integers < n_classes."""
    text = frame.get_column(column).cast(pl.String)
    if labels:
        codes = text.replace_strict(
            {str(k): float(v) for k, v in labels.items()}, default=None, return_dtype=pl.Float64
        )
        unknown = codes.is_null() & text.is_not_null()
        allowed = sorted(map(str, labels))
    else:
        codes = text.cast(pl.Float64, strict=False)
        valid = (codes == codes.round(0)) & (codes >= 0) & (codes < n_classes)
        unknown = text.is_not_null() & ~valid.fill_null(False)
        allowed = [str(i) for i in range(n_classes)]
    if unknown.any():
        i = int(unknown.arg_max() or 0)
        hint = "" if labels else " (give --labels NAME=INDEX,... for text labels)"
        raise located(
            frame[FILE][i],
            frame[LINE][i],
            source,
            f"unknown label {text[i]!r}; the labels are {allowed}{hint}",
        )
    return codes


def _infer_task(resolved: Mapping[str, Any], task: str | None) -> str:
    if task is not None:
        if task not in TASK_TYPES:
            raise SourceError(f"--task {task!r} is not one of {list(TASK_TYPES)}")
        return task
    if "dice" in resolved:
        return "segmentation"
    if "score" in resolved or "probs" in resolved:
        return "classification"
    return "regression"


def read_table_source(
    path: str | Path,
    mapping: Mapping[str, str] | None = None,
    *,
    labels: Mapping[str, int] | None = None,
    task: str | None = None,
    name: str | None = None,
    participants: Participants | None = None,
) -> ImportSource:
    """Read a predictions table into trials (see the module doc for the mapping rules)."""
    file = Path(path)
    frame = _read(file)
    resolved = _resolve_mapping(frame, mapping or {}, file)
    kind = _infer_task(resolved, task)
    notes: list[str] = []
    if "subject_id" not in resolved:
        raise located(
            file,
            1,
            None,
            "no subject column: map one with subject_id=COLUMN"
            + did_you_mean("subject_id", frame.columns[:-2]),
        )
    needed = {"classification": ("y_true",), "regression": ("y_true", "y_pred"),
              "segmentation": ("dice",)}[kind]  # fmt: skip
    for target in needed:
        if target not in resolved:
            raise located(
                file, 1, None, f"{kind}: no {target} column: map one with {target}=COLUMN"
                + did_you_mean(target, frame.columns[:-2])
            )  # fmt: skip
    out = frame.select(FILE, LINE)
    for target, source in resolved.items():
        if target == "probs":
            continue
        out = out.with_columns(frame.get_column(source).alias(target))
    n_classes = max(2, len(labels or {}), len(resolved.get("probs", [])))
    for target in _NUMBERS:
        if target not in resolved:
            continue
        if kind == "classification" and target in ("y_true", "y_pred"):
            out = out.with_columns(
                _labels(out, target, resolved[target], labels, n_classes).alias(target)
            )
        else:
            out = cast_number(out, target, target, resolved[target])
    probs = resolved.get("probs")
    if probs and len(probs) == 1 and isinstance(frame.schema[probs[0]], pl.List):
        out = out.with_columns(frame.get_column(probs[0]).cast(pl.List(pl.Float64)).alias("probs"))
    elif probs:
        for i, source in enumerate(resolved["probs"]):
            out = cast_number(
                out.with_columns(frame.get_column(source).alias(f"_p{i}")),
                f"_p{i}",
                f"_p{i}",
                source,
            )
        out = out.with_columns(
            pl.concat_list([f"_p{i}" for i in range(len(resolved["probs"]))]).alias("probs")
        ).drop([f"_p{i}" for i in range(len(resolved["probs"]))])
    if kind == "classification" and "y_pred" not in out.columns:
        if "score" in out.columns:
            out = out.with_columns(y_pred=(pl.col("score") >= 0.5).cast(pl.Float64))
            notes.append("y_pred not mapped: derived as score >= 0.5")
        elif "probs" in out.columns:
            out = out.with_columns(y_pred=pl.col("probs").list.arg_max().cast(pl.Float64))
            notes.append("y_pred not mapped: derived as the class of highest probability")
    out = _fill_keys(out, resolved, file, name, notes)
    for column in ("sample_id", "session_id", "scanner", "site", "subject_id", "perturbation"):
        if column in out.columns:
            out = out.with_columns(pl.col(column).cast(pl.String))
        elif column in ("session_id", "scanner", "site"):
            out = out.with_columns(pl.lit(None, pl.String).alias(column))
    if "sample_id" not in out.columns:
        session = pl.col("session_id") if "session_id" in out.columns else pl.lit("")
        out = out.with_columns(
            sample_id=pl.concat_str(pl.col("subject_id"), session, separator="_", ignore_nulls=True)
        )
    if "perturbation" not in out.columns:
        out = out.with_columns(perturbation=pl.lit("none"), perturbation_type=pl.lit("none"))
    has_roles = "split" in out.columns
    if has_roles:
        roles = out.get_column("split").cast(pl.String).str.to_lowercase()
        mapped = roles.replace_strict(_ROLES, default=None)
        bad = mapped.is_null()
        if bad.any():
            i = int(bad.arg_max() or 0)
            raise located(
                out[FILE][i],
                out[LINE][i],
                resolved["split"],
                f"split {roles[i]!r} is not one of {sorted(_ROLES)}",
            )
        out = out.with_columns(split=mapped)
    else:
        out = out.with_columns(split=pl.lit("test"))
    joins = JoinNotes(participants)
    out = joins.join(out, "subject_id", "subject")
    notes.extend(joins.notes())
    files = hash_files([file], file.parent)
    trials = []
    for key, part in out.group_by(list(_TRIAL_KEYS), maintain_order=True):
        dataset, model, protocol, fold, seed = key
        splits = None
        if has_roles:
            splits = (
                part.filter(pl.col("perturbation") == "none")
                .select(
                    "sample_id",
                    "subject_id",
                    "session_id",
                    "site",
                    pl.col("split").alias("role"),
                    FILE,
                    LINE,
                )
                .unique(subset=["sample_id", "role"], keep="first", maintain_order=True)
            )
        trials.append(
            ImportedTrial(
                model=str(model),
                dataset=str(dataset),
                task=kind,
                outer_fold=int(fold),
                seed=int(seed),
                params={},
                predictions=part.filter(pl.col("split") != "train"),
                files=files,
                splits=splits,
                protocol=str(protocol),
                columns={k: v for k, v in resolved.items() if isinstance(v, str)},
            )
        )
    mapping_used = {k: ("+".join(v) if isinstance(v, list) else v) for k, v in resolved.items()}
    mapping_used |= {"_task": kind, "_labels": dict(labels or {}), "_name": name}
    return ImportSource("table", file.resolve(), trials, mapping_used, None, notes)


def _fill_keys(
    out: pl.DataFrame, resolved: Mapping[str, Any], file: Path, name: str | None, notes: list[str]
) -> pl.DataFrame:
    """The trial keys: mapped columns (checked) or constants, with a note for each constant."""
    defaults: dict[str, Any] = {
        "dataset": file.stem,
        "model": name,
        "protocol": "outer",
        "outer_fold": 0,
        "seed": 0,
    }
    for key in _TRIAL_KEYS:
        if key in resolved:
            if key in ("outer_fold", "seed"):
                out = cast_number(out, key, key, resolved[key])
                out = out.with_columns(pl.col(key).cast(pl.Int64))
            else:
                out = out.with_columns(pl.col(key).cast(pl.String))
            missing = out.get_column(key).is_null()
            if missing.any():
                i = int(missing.arg_max() or 0)
                raise located(out[FILE][i], out[LINE][i], resolved[key], f"missing {key}")
            continue
        if key == "model" and name is None:
            raise SourceError(
                f"{file}: no model column: map one (model=COLUMN) or name the model with --name"
            )
        if key in ("outer_fold", "seed", "dataset"):
            notes.append(f"{key} not mapped: every row gets {defaults[key]!r}")
        out = out.with_columns(pl.lit(defaults[key]).alias(key))
    return out
