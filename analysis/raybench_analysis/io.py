"""Read a raybench results directory lazily, and audit its splits for leakage.

The directory layout and columns are the results contract (docs/results.md): four tables, each a
folder of Parquet files, one per trial; a trial is *committed* once its ``trials/<id>.parquet``
exists. Only committed trials are read, so a run in progress or one that crashed never shows a
half-written trial. Scans are lazy (``pl.scan_parquet``): filters and aggregations are pushed
down, so millions of prediction rows are aggregated without loading them whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from raybench_analysis._frames import AnalysisError
from raybench_analysis.contract import (
    DATA_TABLES,
    OPTIONAL_TABLES,
    TABLE_NAMES,
    Inventory,
    check_leakage,
    inventory,
    polars_schema,
)

__all__ = ["SCHEMAS", "TABLES", "Results", "check_leakage", "load"]

TABLES = TABLE_NAMES

#: Column types of each table, derived from :data:`raybench_analysis.contract.CONTRACT`; empty
#: tables are created with these.
SCHEMAS: dict[str, dict[str, pl.DataType]] = {t: polars_schema(t) for t in TABLE_NAMES}


@dataclass(frozen=True)
class Results:
    """The tables of one results directory, as lazy frames of committed trials only.

    Attributes
    ----------
    root : str
        The directory (or URI) read.
    trials, predictions, epochs, splits, explanations, features : polars.LazyFrame
        The tables; a table with no file is an empty frame with the contract's schema
        (``explanations`` is filled only by suites with ``evaluation.explanations``,
        ``features`` only by generated datasets named in ``validation.external``).
    committed : tuple of str
        Ids of the committed trials (those with a ``trials`` file).
    missing : tuple of str
        Human-readable notes: tables absent, files of uncommitted trials skipped.
    """

    root: str
    trials: pl.LazyFrame
    predictions: pl.LazyFrame
    epochs: pl.LazyFrame
    splits: pl.LazyFrame
    committed: tuple[str, ...]
    missing: tuple[str, ...]
    explanations: pl.LazyFrame = field(
        default_factory=lambda: pl.LazyFrame(schema=polars_schema("explanations"))
    )
    features: pl.LazyFrame = field(
        default_factory=lambda: pl.LazyFrame(schema=polars_schema("features"))
    )

    def __repr__(self) -> str:
        notes = f"; missing: {list(self.missing)}" if self.missing else ""
        return f"Results({self.root!r}, {len(self.committed)} committed trials{notes})"


def _filesystem(root: str) -> tuple[Any, str, str]:
    """(pyarrow filesystem, path on it, prefix that turns a path back into a polars source)."""
    from pyarrow import fs as pafs

    if "://" not in root or root.startswith("file://"):
        return pafs.LocalFileSystem(), str(Path(root.removeprefix("file://")).resolve()), ""
    try:
        filesystem, base = pafs.FileSystem.from_uri(root)
    except (ValueError, OSError) as exc:
        raise AnalysisError(
            f"results location {root!r} is not a usable filesystem URI ({exc}); give a local "
            "directory or a URI such as s3://bucket/prefix"
        ) from exc
    return filesystem, base.rstrip("/"), root.split("://", 1)[0] + "://"


def _scan(files: list[str], table: str) -> pl.LazyFrame:
    if not files:
        return pl.LazyFrame(schema=SCHEMAS[table])
    return pl.scan_parquet(
        files, schema=SCHEMAS[table], missing_columns="insert", extra_columns="ignore"
    )


def _exists(root: str) -> bool:
    if "://" not in root or root.startswith("file://"):
        return Path(root.removeprefix("file://")).is_dir()
    return True  # remote: a missing prefix simply lists no file


def _damage_error(inv: Inventory) -> AnalysisError:
    first = next(iter(inv.damaged.values()))
    more = f" (and {len(inv.damaged) - 1} more trial(s))" if len(inv.damaged) > 1 else ""
    return AnalysisError(
        f"results file {first.path} of trial {first.trial_id} is damaged: {first.reason}{more}. "
        "Run the same `raybench run` command again to redo the damaged trials (`raybench status` "
        "lists them), then analyse."
    )


def load(results_dir: str | Path) -> Results:
    """Open a results directory: lazy frames of the committed trials' tables.

    Parameters
    ----------
    results_dir : str or Path
        A local directory or a pyarrow filesystem URI (``s3://bucket/run``) holding
        ``trials/``, ``predictions/``, ``epochs/``, ``splits/`` folders of Parquet files.

    Returns
    -------
    Results
        ``trials``, ``predictions``, ``epochs``, ``splits`` (``polars.LazyFrame``; rows of
        committed trials only), ``committed`` (trial ids) and ``missing`` (notes on what is
        absent or skipped). A partial directory works: absent tables are empty frames.

    Notes
    -----
    A trial is committed when ``trials/<trial_id>.parquet`` exists (it is renamed into place
    last) and its files pass the integrity check of :func:`raybench_analysis.contract.inventory`;
    rows of the other tables whose ``trial_id`` is not committed are filtered out. Files under
    ``<table>/.tmp/`` are never read. A damaged trial (a file unreadable, of the wrong schema or
    with another row count than recorded at commit) raises :class:`AnalysisError` naming the file.

    Examples
    --------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "trials").mkdir()
    >>> pl.DataFrame({"trial_id": ["t1"], "status": ["completed"]}).write_parquet(
    ...     root / "trials" / "t1.parquet")
    >>> res = load(root)
    >>> res.committed, res.predictions.collect().height
    (('t1',), 0)
    """
    root = str(results_dir)
    if not _exists(root):
        raise AnalysisError(
            f"results directory {root!r} does not exist; give the folder that holds "
            "trials/ and predictions/ (default results/<suite name>/)"
        )
    filesystem, base, prefix = _filesystem(root)
    inv = inventory(filesystem, base)
    if inv.damaged:
        raise _damage_error(inv)
    committed = inv.committed
    notes = [
        f"{t}: no Parquet file in {root}/{t}/"
        for t in TABLE_NAMES
        if not inv.files[t] and t not in OPTIONAL_TABLES
    ]
    for table, paths in inv.orphans.items():
        notes.append(
            f"{table}: {len(paths)} file(s) of uncommitted trials skipped "
            f"(e.g. {Path(paths[0]).name})"
        )
    frames = {t: _scan([prefix + p for p in inv.files[t]], t) for t in TABLE_NAMES}
    for table in DATA_TABLES:  # the store writes one trial per file; hand-made files may not
        frames[table] = frames[table].filter(pl.col("trial_id").is_in(list(committed)))
    return Results(
        root=root,
        trials=frames["trials"],
        predictions=frames["predictions"],
        epochs=frames["epochs"],
        splits=frames["splits"],
        explanations=frames["explanations"],
        features=frames["features"],
        committed=committed,
        missing=tuple(notes),
    )
