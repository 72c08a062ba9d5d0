"""BIDS / CAPS data source: ``participants.tsv`` plus images found by a path pattern.

The pattern is a glob relative to the root with ``{subject}`` and (optionally) ``{session}``
placeholders standing for the labels after ``sub-`` and ``ses-``; for BIDS the default is
``sub-{subject}/ses-{session}/anat/sub-{subject}_ses-{session}*_T1w.nii.gz`` and a CAPS tree works
with e.g. ``subjects/sub-{subject}/ses-{session}/t1_linear/*_T1w*.nii.gz``. Subject-level columns
come from ``participants.tsv``, session-level ones from ``sub-<label>/sub-<label>_sessions.tsv``
when present (a session column wins over a participant column of the same name).
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

import polars as pl

from raybench.data.cohort import Cohort
from raybench.data.fingerprint import HashCache, table_fingerprint
from raybench.data.manifest import (
    missing_columns,
    read_table_file,
    rename_columns,
    standard_table,
)
from raybench.data.validate import check_cohort, did_you_mean, raise_problems
from raybench.errors import DataError
from raybench.suite.schema import BidsDataset, ColumnMap

__all__ = ["DEFAULT_PATTERN", "read_bids", "read_bids_table"]

DEFAULT_PATTERN: str = BidsDataset.model_fields["pattern"].default
_TOKENS = re.compile(r"(\{subject\}|\{session\}|\*\*/|\*|\?|\{[^}]*\})")
SINGLE_SESSION = "ses-1"


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Regex matching the pattern's paths, with ``subject`` and ``session`` groups."""
    parts, seen = [], set()
    for token in _TOKENS.split(pattern):
        if token in ("{subject}", "{session}"):
            group = token[1:-1]
            parts.append(f"(?P={group})" if group in seen else f"(?P<{group}>[^/]+?)")
            seen.add(group)
        elif token == "**/":
            parts.append("(?:.*/)?")
        elif token == "*":
            parts.append("[^/]*")
        elif token == "?":
            parts.append("[^/]")
        else:
            parts.append(re.escape(token))
    return re.compile("".join(parts) + r"\Z")


def _check_pattern(pattern: str) -> None:
    unknown = sorted(
        {t for t in _TOKENS.findall(pattern) if t.startswith("{")} - {"{subject}", "{session}"}
    )
    if "{subject}" not in pattern or unknown or os.path.isabs(pattern):
        raise DataError(
            f"pattern {pattern!r}: must be a path relative to the root containing {{subject}} "
            f"(and optionally {{session}}); unknown placeholders: {unknown}; "
            f"example: {DEFAULT_PATTERN!r}"
        )


_STARS = re.compile(r"\*{2,}")


def _one_star(match: re.Match[str]) -> str:
    """Keep a whole-component ``**``; collapse other runs of stars (``{session}*``) to one."""
    text, start, end = match.string, match.start(), match.end()
    whole = (start == 0 or text[start - 1] == "/") and (end == len(text) or text[end] == "/")
    return "**" if whole and end - start == 2 else "*"


def _natural(text: str) -> list[object]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text)]


def _prefixed(value: str, prefix: str) -> str:
    return value if value.startswith(prefix) else prefix + value


def _sessions_table(root: Path, subject_id: str) -> pl.DataFrame | None:
    path = root / subject_id / f"{subject_id}_sessions.tsv"
    if not path.is_file():
        return None
    table = read_table_file(path)
    if "session_id" not in table.columns:
        raise DataError(
            f"{path}, row 1: missing column 'session_id'"
            f"{did_you_mean('session_id', table.columns)}; columns found: {table.columns}"
        )
    return table.with_columns(
        pl.col("session_id").map_elements(lambda s: _prefixed(s, "ses-"), return_dtype=pl.String)
    )


def read_bids_table(
    root: str | Path,
    pattern: str = DEFAULT_PATTERN,
    columns: ColumnMap | None = None,
    *,
    name: str = "",
) -> Cohort:
    """Build the cohort table of a BIDS/CAPS tree without checking image headers or hashing.

    The steps: ``participants.tsv`` (:func:`_participants`), the images matching the pattern
    (:func:`_find_images`), one row per participant's session (:class:`_Rows`), then the column
    handling shared with the manifest reader (:func:`~raybench.data.manifest.rename_columns`).
    """
    root = Path(os.path.abspath(root))
    columns = columns or ColumnMap(subject_id="participant_id")
    name = name or root.name
    if not root.is_dir():
        raise DataError(f"{root}: BIDS root not found or not a directory; check the suite's path")
    _check_pattern(pattern)
    participants, where = _participants(root, columns.subject_id)
    rows = _Rows(root, pattern, where, columns.subject_id, _find_images(root, pattern))
    for index, record in enumerate(participants.iter_rows(named=True)):
        rows.add_participant(index + 2, record)
    rows.add_unlisted()
    raise_problems(name, rows.problems)
    if not rows.rows:
        raise DataError(f"{root}: no image matches pattern {pattern!r}")
    keys = list(dict.fromkeys(k for r in rows.rows for k in r))
    table = pl.DataFrame(
        {k: [r.get(k) for r in rows.rows] for k in keys}, schema={k: pl.String for k in keys}
    )
    mapping = {key: getattr(columns, key) for key in ("scanner", "site", "label")}
    needed = {"label"} & columns.model_fields_set
    raise_problems(name, missing_columns(table.columns, mapping, needed, where))
    table, renamed = rename_columns(table, mapping, where)
    return Cohort(
        name=name,
        table=standard_table(table),
        fingerprint="",
        source=where,
        rows=tuple(rows.row_numbers),
        columns={**renamed, "subject_id": columns.subject_id},
    )


def _participants(root: Path, subject_col: str) -> tuple[pl.DataFrame, str]:
    """``participants.tsv`` of ``root`` (with its subject column) and its path."""
    path = root / "participants.tsv"
    if not path.is_file():
        raise DataError(
            f"{root}: no participants.tsv; a BIDS/CAPS root needs one with a "
            f"{subject_col!r} column (one row per subject)"
        )
    participants = read_table_file(path)
    if subject_col not in participants.columns:
        raise DataError(
            f"{path}, row 1: missing column {subject_col!r} (columns.subject_id)"
            f"{did_you_mean(subject_col, participants.columns)}; columns found: "
            f"{participants.columns}"
        )
    return participants, str(path)


def _find_images(root: Path, pattern: str) -> dict[str, dict[str, list[str]]]:
    """Subject id -> session id -> the image paths (relative to ``root``) matching ``pattern``."""
    regex = _pattern_regex(pattern)
    found: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    glob = _STARS.sub(_one_star, pattern.replace("{subject}", "*").replace("{session}", "*"))
    for path in sorted(root.glob(glob)):
        rel = path.relative_to(root).as_posix()
        match = regex.match(rel)
        if match is None:
            continue
        session = match.groupdict().get("session")
        subject_id = "sub-" + match["subject"]
        found[subject_id][_prefixed(session, "ses-") if session else SINGLE_SESSION].append(rel)
    return found


class _Rows:
    """The cohort's rows, built participant by participant, with every problem found on the way."""

    def __init__(
        self,
        root: Path,
        pattern: str,
        where: str,
        subject_col: str,
        found: dict[str, dict[str, list[str]]],
    ) -> None:
        self.root, self.pattern, self.where, self.subject_col = root, pattern, where, subject_col
        self.found = found
        self.problems: list[str] = []
        self.rows: list[dict[str, str | None]] = []
        self.row_numbers: list[int] = []
        self.listed: dict[str, int] = {}

    def add_participant(self, row: int, record: dict[str, str | None]) -> None:
        """The rows of the participant in line ``row`` of participants.tsv: one per session."""
        where, col = self.where, self.subject_col
        value = record[col]
        if not value:
            self.problems.append(f"{where}, row {row}, column {col!r}: empty participant id")
            return
        subject_id = _prefixed(value, "sub-")
        if subject_id in self.listed:
            self.problems.append(
                f"{where}, row {row}, column {col!r}: participant {subject_id!r} is "
                f"already listed in row {self.listed[subject_id]}; list each participant once"
            )
            return
        self.listed[subject_id] = row
        sessions = self.found.get(subject_id, {})
        if not sessions:
            self.problems.append(
                f"{where}, row {row}, column {col!r}: no image of {subject_id!r} matches "
                f"pattern {self.pattern!r} under {self.root}; fix the pattern or remove the "
                "participant"
            )
            return
        extra = _sessions_table(self.root, subject_id)
        subject = {k: v for k, v in record.items() if k != col}
        for session_id in sorted(sessions, key=_natural):
            self._add_session(row, subject_id, session_id, sessions[session_id], subject, extra)

    def _add_session(
        self,
        row: int,
        subject_id: str,
        session_id: str,
        paths: list[str],
        subject: dict[str, str | None],
        extra: pl.DataFrame | None,
    ) -> None:
        if len(paths) > 1:
            self.problems.append(
                f"{self.where}, row {row}: {len(paths)} images of {subject_id} {session_id} match "
                f"pattern {self.pattern!r}: {paths[:3]}; make the pattern select one per session"
            )
            return
        out: dict[str, str | None] = {
            "sample_id": f"{subject_id}_{session_id}",
            "subject_id": subject_id,
            "session_id": session_id,
            "image": str(self.root / paths[0]),
            **subject,
        }
        if extra is not None:  # a session column wins over a participant column of its name
            for srow in extra.filter(pl.col("session_id") == session_id).iter_rows(named=True):
                out.update({k: v for k, v in srow.items() if k != "session_id"})
        self.rows.append(out)
        self.row_numbers.append(row)

    def add_unlisted(self) -> None:
        """A problem for each subject with images but no row in participants.tsv."""
        for subject_id in sorted(set(self.found) - set(self.listed)):
            first = next(iter(self.found[subject_id].values()))[0]
            self.problems.append(
                f"{self.root / first}: subject {subject_id!r} has images but no row in "
                f"{self.where}; add it"
            )


def read_bids(
    root: str | Path,
    pattern: str = DEFAULT_PATTERN,
    columns: ColumnMap | None = None,
    *,
    name: str = "",
    write_cache: bool = True,
) -> Cohort:
    """Read, validate and fingerprint a BIDS/CAPS tree; raise DataError naming file and row."""
    cohort = read_bids_table(root, pattern, columns, name=name)
    check_cohort(cohort)
    base = Path(cohort.source).parent
    fingerprint = table_fingerprint(cohort.table, base, HashCache(base, write=write_cache))
    return Cohort(
        cohort.name, cohort.table, fingerprint, cohort.source, cohort.rows, cohort.columns
    )
