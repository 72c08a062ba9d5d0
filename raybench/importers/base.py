"""What every importer shares: the imported trial, located errors, hashing, participants, checks.

An importer reads a source (a predictions table, a ClinicaDL MAPS, an nnU-Net results folder) into
an :class:`ImportSource`: a list of :class:`ImportedTrial` (one per trained model x fold x seed,
with its predictions, its split roles and its epochs as polars frames whose columns are those of
the results contract) and the sha256 of every file read. :func:`check_source` then applies the
checks every format shares (subject ids present, scores and Dice within [0, 1], the contract's
leakage check on the source's own split files) and :mod:`raybench.importers.writer` commits the
trials through the result store. Nothing here restates a table schema: frames are conformed to
:func:`raybench_analysis.contract.polars_schema` of their table.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from raybench_analysis.contract import check_leakage, polars_schema

from raybench.errors import DataError, LeakageError

__all__ = [
    "FILE",
    "LINE",
    "ImportSource",
    "ImportedTrial",
    "JoinNotes",
    "Participants",
    "SourceError",
    "check_source",
    "conform_frame",
    "did_you_mean",
    "located",
    "read_delimited",
    "sha256_file",
]

#: Hidden columns that carry, row by row, the source file and its line, for located errors.
FILE, LINE = "_file", "_line"


class SourceError(DataError):
    """A source cannot be imported as it is: the message names the file, the line and the column."""


def located(file: str | Path, line: int | None, column: str | None, what: str) -> SourceError:
    """A :class:`SourceError` whose message starts with ``file: line N, column 'c':``."""
    where = str(file)
    if line is not None:
        where += f": line {line}"
    if column is not None:
        where += f", column {column!r}" if line is not None else f": column {column!r}"
    return SourceError(f"{where}: {what}")


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or the list of choices."""
    options = sorted(set(choices))
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f"; the choices are {options}"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_delimited(path: Path) -> pl.DataFrame:
    """A CSV/TSV file as strings (every column), with :data:`FILE` and :data:`LINE` columns.

    The separator is a tab for ``.tsv``/``.tab``/``.txt``, else a comma; values are kept as
    text so that a bad number is reported with its line by whoever casts it.
    """
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab", ".txt") else ","
    try:
        frame = pl.read_csv(path, separator=sep, infer_schema=False, null_values=["", "NA", "nan"])
    except (pl.exceptions.ComputeError, OSError) as exc:
        raise located(
            path, None, None, f"unreadable as a {sep!r}-separated table ({exc})"
        ) from None
    return with_lines(frame, path)


def with_lines(frame: pl.DataFrame, path: Path, first_line: int = 2) -> pl.DataFrame:
    """``frame`` with :data:`FILE` = ``path`` and :data:`LINE` = the file line of each row."""
    return frame.with_columns(
        pl.lit(str(path)).alias(FILE),
        (pl.int_range(pl.len(), dtype=pl.Int64) + first_line).alias(LINE),
    )


def conform_frame(table: str, frame: pl.DataFrame, keep: Sequence[str] = ()) -> pl.DataFrame:
    """``frame`` with exactly the contract columns of ``table`` (missing ones null), plus ``keep``.

    Values are cast to the contract's types; callers have checked them already, so a failed cast
    is a bug, not user input.
    """
    schema = polars_schema(table)
    columns = [
        (pl.col(name) if name in frame.columns else pl.lit(None)).cast(dtype).alias(name)
        for name, dtype in schema.items()
    ]
    return frame.select(*columns, *[c for c in keep if c in frame.columns])


def cast_number(
    frame: pl.DataFrame, source: str, target: str, label: str | None = None
) -> pl.DataFrame:
    """Cast column ``source`` into float ``target``; a value that is not a number is located
    (named ``label``, the column's name in the source file, default ``source``)."""
    column = frame.get_column(source)
    if column.dtype.is_numeric() or column.dtype == pl.Null:
        return frame.with_columns(column.cast(pl.Float64).alias(target))
    as_text = column.cast(pl.String)
    values = as_text.cast(pl.Float64, strict=False)
    bad = values.is_null() & as_text.is_not_null()
    if bad.any():
        i = int(bad.arg_max() or 0)
        raise located(
            frame[FILE][i], frame[LINE][i], label or source, f"{as_text[i]!r} is not a number"
        )
    return frame.with_columns(values.alias(target))


@dataclass
class ImportedTrial:
    """One trained model x fold x seed of a source, as contract frames.

    ``predictions`` holds contract ``predictions`` columns (the trial-level ones are filled by the
    writer from the attributes here) plus :data:`FILE`/:data:`LINE`; ``splits`` the rows of the
    source's split files (``sample_id, subject_id, session_id, site, role`` plus ``FILE``/
    ``LINE``), or None when the source has no split file; ``epochs`` contract ``epochs`` rows or
    None. ``files`` maps each file read for this trial (relative to the source) to its sha256;
    ``key`` holds what else distinguishes the trial inside its source (a data group, a label).
    ``columns`` maps contract columns to the source column they came from, for error messages.
    """

    model: str
    dataset: str
    task: str
    outer_fold: int | None
    seed: int | None
    params: dict[str, Any]
    predictions: pl.DataFrame
    files: dict[str, str]
    splits: pl.DataFrame | None = None
    epochs: pl.DataFrame | None = None
    key: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)
    protocol: str = "outer"
    best_epoch: int | None = None
    val_score: float | None = None

    def label(self) -> str:
        """``model, dataset, fold, seed`` for messages."""
        return (
            f"model {self.model!r}, dataset {self.dataset!r}, fold {self.outer_fold}, "
            f"seed {self.seed}"
        )


@dataclass
class ImportSource:
    """What an importer read: its trials, the files hashed, the mapping used and notes."""

    format: str
    path: Path
    trials: list[ImportedTrial]
    mapping: dict[str, Any]
    tool_version: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def files(self) -> dict[str, str]:
        """Every file read for any trial: relative path -> sha256."""
        out: dict[str, str] = {}
        for trial in self.trials:
            out.update(trial.files)
        return dict(sorted(out.items()))


# --------------------------------------------------------------------------- participants


@dataclass(frozen=True)
class Participants:
    """A participants table: subject (and optionally session or case) -> site and scanner.

    Columns: ``participant_id`` or ``subject_id`` (required), ``session_id`` (optional; joins on
    subject and session then), ``case_id`` or ``sample_id`` (optional: nnU-Net case ids), ``site``
    and ``scanner`` (optional). Read as text.
    """

    path: Path
    frame: pl.DataFrame

    @classmethod
    def read(cls, path: str | Path) -> Participants:
        """Read and check ``path`` (CSV/TSV); a table without a subject column is located."""
        file = Path(path)
        if not file.is_file():
            raise SourceError(f"--participants {file}: no such file")
        frame = read_delimited(file)
        if "subject_id" not in frame.columns and "participant_id" in frame.columns:
            frame = frame.rename({"participant_id": "subject_id"})
        if "sample_id" not in frame.columns and "case_id" in frame.columns:
            frame = frame.rename({"case_id": "sample_id"})
        if "subject_id" not in frame.columns:
            raise located(
                file,
                1,
                None,
                "a participants table needs a 'participant_id' (or 'subject_id') column"
                + did_you_mean("participant_id", frame.columns[:-2]),
            )
        return cls(file, frame)

    def join(
        self, frame: pl.DataFrame, on: str = "subject_id"
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(``frame`` with ``site``/``scanner``/``subject_id`` filled from the table, rows that
        found no participant row). ``on``: ``subject_id``, or ``sample_id`` for case ids."""
        keys = [on]
        sessions = "session_id" in frame.columns and frame["session_id"].null_count() == 0
        if on == "subject_id" and "session_id" in self.frame.columns and sessions:
            keys.append("session_id")
        wanted = [c for c in ("subject_id", "session_id", "site", "scanner") if c not in keys]
        info = self.frame.select(*keys, *[c for c in wanted if c in self.frame.columns]).unique(
            subset=keys, keep="first"
        )
        info = info.rename({c: f"_p_{c}" for c in info.columns if c not in keys})
        joined = frame.with_columns(pl.col(k).cast(pl.String) for k in keys).join(
            info, on=keys, how="left"
        )
        found = pl.lit(False)
        for c in wanted:
            if f"_p_{c}" in joined.columns:
                found = found | pl.col(f"_p_{c}").is_not_null()
                base = pl.col(c) if c in joined.columns else pl.lit(None, pl.String)
                joined = joined.with_columns(pl.coalesce(pl.col(f"_p_{c}"), base).alias(c))
        unjoined = joined.filter(~found)
        return joined.drop([c for c in joined.columns if c.startswith("_p_")]), unjoined


# --------------------------------------------------------------------------- checks


def _first(frame: pl.DataFrame, mask: pl.Series) -> dict[str, Any]:
    return frame.filter(mask).row(0, named=True)


def _check_range(trial: ImportedTrial, column: str) -> None:
    frame = trial.predictions
    if column not in frame.columns:
        return
    values = frame.get_column(column)
    if values.dtype == pl.List(pl.Float64):
        values = values.list.eval(
            ((pl.element() < 0) | (pl.element() > 1) | pl.element().is_nan()).any()
        ).list.first()
        bad = values.fill_null(False)
    else:
        bad = ((values < 0) | (values > 1) | values.is_nan()).fill_null(False)
    if bad.any():
        row = _first(frame, bad)
        source = trial.columns.get(column, column)
        raise located(
            row[FILE], row[LINE], source, f"{row[column]!r} is not within [0, 1] ({column})"
        )


def check_source(source: ImportSource) -> str:
    """Apply the checks every format shares; returns the leakage verdict, in words.

    - every prediction and split row has a subject id;
    - ``score``, ``probs`` and ``dice`` lie within [0, 1];
    - no subject holds two roles (train / val / test) in one trial according to the source's own
      split files (:func:`raybench_analysis.contract.check_leakage`, the one audit).

    Raises :class:`SourceError` (or :class:`~raybench.errors.LeakageError`) naming the file,
    the line and the column.
    """
    if not source.trials:
        raise SourceError(f"{source.path}: nothing to import (no predictions found)")
    audited: list[pl.DataFrame] = []
    for index, trial in enumerate(source.trials):
        frames = [("predictions", trial.predictions)]
        if trial.splits is not None:
            frames.append(("splits", trial.splits))
        for _, frame in frames:
            missing = frame.get_column("subject_id").is_null()
            if missing.any():
                row = _first(frame, missing)
                source_col = trial.columns.get("subject_id", "subject_id")
                raise located(row[FILE], row[LINE], source_col, "missing subject id")
        for column in ("score", "probs", "dice"):
            _check_range(trial, column)
        if trial.splits is not None:
            audited.append(trial.splits.with_columns(trial_id=pl.lit(str(index))))
    if not audited:
        return (
            "not checkable: the source holds no split file (who was trained on what), only "
            "test predictions"
        )
    splits = pl.concat(audited, how="diagonal_relaxed")
    leaks = check_leakage(splits)
    if leaks.height:
        first = leaks.row(0, named=True)
        trial = source.trials[int(first["trial_id"])]
        rows = splits.filter(
            (pl.col("trial_id") == first["trial_id"])
            & (pl.col("subject_id") == first["subject_id"])
        )
        where = ", ".join(
            f"{f} line {n} ({r})"
            for f, n, r in rows.select(FILE, LINE, "role").unique().sort(FILE, LINE).rows()[:4]
        )
        raise LeakageError(
            f"subject {first['subject_id']!r} is in both {first['roles'].replace(',', ' and ')} "
            f"of one split ({trial.label()}): {where}. {leaks.height} (trial, subject) pair(s) "
            "leak in all. "
            "The source's own split files say these models were tested on subjects they were "
            "trained on; fix the splits (split by subject, not by image or case) and retrain."
        )
    n_trials = len(audited)
    return f"passed: no subject holds two roles in any of the {n_trials} imported split(s)"


def relative(path: Path, root: Path) -> str:
    """``path`` relative to the source ``root`` (posix), or its name when outside it."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name


def hash_files(paths: Iterable[Path], root: Path) -> dict[str, str]:
    """``relative path -> sha256`` of ``paths``."""
    return {relative(p, root): sha256_file(p) for p in sorted(set(paths))}


class JoinNotes:
    """Rows that found no participant row, gathered over a whole import into one note per kind.

    An importer joins many files (one per fold, selection and data group) that list the same
    subjects; one note per kind of row, naming the subjects and a first location, reads better
    than one per file.
    """

    def __init__(self, participants: Participants | None) -> None:
        self.participants = participants
        self._missing: dict[str, tuple[set[str], str]] = {}

    def join(self, frame: pl.DataFrame, on: str, what: str) -> pl.DataFrame:
        """``frame`` joined to the participants (when given); unjoined rows are remembered."""
        if self.participants is None:
            return frame
        joined, unjoined = self.participants.join(frame, on=on)
        if unjoined.height:
            ids, where = self._missing.get(what, (set(), ""))
            first = unjoined.select(FILE, LINE).row(0)
            where = where or (f"{first[0]} line {first[1]}" if first[1] else str(first[0]))
            self._missing[what] = (ids | set(unjoined.get_column(on).cast(pl.String)), where)
        return joined

    def notes(self) -> list[str]:
        """One sentence per kind of row that found no participant row."""
        out = []
        for what, (ids, where) in self._missing.items():
            shown = ", ".join(sorted(ids)[:5]) + (" ..." if len(ids) > 5 else "")
            path = self.participants.path if self.participants is not None else "--participants"
            out.append(
                f"{len(ids)} {what}(s) found no row in {path} (site/scanner left empty): {shown}; "
                f"first at {where}"
            )
        return out


def constant_params(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """``mapping`` restricted to JSON scalars and lists of scalars (hyper-parameters)."""
    scalar = (str, int, float, bool, type(None))
    return {
        k: v
        for k, v in sorted(mapping.items())
        if isinstance(v, scalar) or (isinstance(v, list) and all(isinstance(x, scalar) for x in v))
    }
