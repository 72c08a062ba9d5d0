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

from raybench.data.cohort import REQUIRED_COLUMNS, Cohort
from raybench.data.fingerprint import HashCache, table_fingerprint
from raybench.data.manifest import DEFAULT_SITE, read_table_file
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
    """Build the cohort table of a BIDS/CAPS tree without checking image headers or hashing."""
    root = Path(os.path.abspath(root))
    columns = columns or ColumnMap(subject_id="participant_id")
    name = name or root.name
    if not root.is_dir():
        raise DataError(f"{root}: BIDS root not found or not a directory; check the suite's path")
    _check_pattern(pattern)
    participants_path = root / "participants.tsv"
    if not participants_path.is_file():
        raise DataError(
            f"{root}: no participants.tsv; a BIDS/CAPS root needs one with a "
            f"{columns.subject_id!r} column (one row per subject)"
        )
    participants = read_table_file(participants_path)
    where = str(participants_path)
    subject_col = columns.subject_id
    if subject_col not in participants.columns:
        raise DataError(
            f"{where}, row 1: missing column {subject_col!r} (columns.subject_id)"
            f"{did_you_mean(subject_col, participants.columns)}; columns found: "
            f"{participants.columns}"
        )

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

    problems: list[str] = []
    rows: list[dict[str, str | None]] = []
    row_numbers: list[int] = []
    listed: dict[str, int] = {}
    for index, record in enumerate(participants.iter_rows(named=True)):
        row = index + 2
        value = record[subject_col]
        if not value:
            problems.append(f"{where}, row {row}, column {subject_col!r}: empty participant id")
            continue
        subject_id = _prefixed(value, "sub-")
        if subject_id in listed:
            problems.append(
                f"{where}, row {row}, column {subject_col!r}: participant {subject_id!r} is "
                f"already listed in row {listed[subject_id]}; list each participant once"
            )
            continue
        listed[subject_id] = row
        sessions = found.get(subject_id, {})
        if not sessions:
            problems.append(
                f"{where}, row {row}, column {subject_col!r}: no image of {subject_id!r} matches "
                f"pattern {pattern!r} under {root}; fix the pattern or remove the participant"
            )
            continue
        extra = _sessions_table(root, subject_id)
        for session_id in sorted(sessions, key=_natural):
            paths = sessions[session_id]
            if len(paths) > 1:
                problems.append(
                    f"{where}, row {row}: {len(paths)} images of {subject_id} {session_id} match "
                    f"pattern {pattern!r}: {paths[:3]}; make the pattern select one per session"
                )
                continue
            out: dict[str, str | None] = {
                "sample_id": f"{subject_id}_{session_id}",
                "subject_id": subject_id,
                "session_id": session_id,
                "image": str(root / paths[0]),
            }
            out.update({k: v for k, v in record.items() if k != subject_col})
            if extra is not None:
                for srow in extra.filter(pl.col("session_id") == session_id).iter_rows(named=True):
                    out.update({k: v for k, v in srow.items() if k != "session_id"})
            rows.append(out)
            row_numbers.append(row)
    for subject_id in sorted(set(found) - set(listed)):
        first = next(iter(found[subject_id].values()))[0]
        problems.append(
            f"{root / first}: subject {subject_id!r} has images but no row in {where}; add it"
        )
    raise_problems(name, problems)
    if not rows:
        raise DataError(f"{root}: no image matches pattern {pattern!r}")

    keys = list(dict.fromkeys(k for r in rows for k in r))
    table = pl.DataFrame(
        {k: [r.get(k) for r in rows] for k in keys}, schema={k: pl.String for k in keys}
    )
    renamed: dict[str, str] = {}
    for key in ("scanner", "site", "label"):
        source = getattr(columns, key)
        if source in table.columns and source != key:
            if key in table.columns:
                raise DataError(f"{where}, row 1: both {key!r} and {source!r} (columns.{key})")
            table = table.rename({source: key})
            renamed[key] = source
        elif key == "label" and "label" in columns.model_fields_set and source not in keys:
            raise DataError(
                f"{where}, row 1: missing column {source!r} (columns.label)"
                f"{did_you_mean(source, keys)}"
            )
    for key in ("scanner", "site"):
        if key not in table.columns:
            table = table.with_columns(pl.lit(DEFAULT_SITE, dtype=pl.String).alias(key))
    rest = [c for c in table.columns if c not in REQUIRED_COLUMNS]
    renamed["subject_id"] = subject_col
    return Cohort(
        name=name,
        table=table.select(*REQUIRED_COLUMNS, *rest),
        fingerprint="",
        source=where,
        rows=tuple(row_numbers),
        columns=renamed,
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
