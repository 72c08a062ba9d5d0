"""Read a raybench results directory lazily, and audit its splits for leakage.

The directory layout and columns are the results contract (docs/results.md): four tables, each a
folder of Parquet files, one per trial; a trial is *committed* once its ``trials/<id>.parquet``
exists. Only committed trials are read, so a run in progress or one that crashed never shows a
half-written trial. Scans are lazy (``pl.scan_parquet``): filters and aggregations are pushed
down, so millions of prediction rows are aggregated without loading them whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from raybench_analysis._frames import AnalysisError, require_columns, to_polars

__all__ = ["SCHEMAS", "TABLES", "Results", "check_leakage", "load"]

TABLES = ("trials", "predictions", "epochs", "splits")

_UTC = pl.Datetime("us", "UTC")

#: Column types of each table (docs/results.md); empty tables are created with these.
SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "trials": {
        "trial_id": pl.String(),
        "suite": pl.String(),
        "dataset": pl.String(),
        "model": pl.String(),
        "task": pl.String(),
        "stage": pl.String(),
        "protocol": pl.String(),
        "outer_fold": pl.Int64(),
        "inner_fold": pl.Int64(),
        "seed": pl.Int64(),
        "params": pl.String(),
        "status": pl.String(),
        "error": pl.String(),
        "traceback": pl.String(),
        "attempts": pl.Int64(),
        "started_at": _UTC,
        "finished_at": _UTC,
        "train_seconds": pl.Float64(),
        "eval_seconds": pl.Float64(),
        "node": pl.String(),
        "device": pl.String(),
        "raybench_version": pl.String(),
        "torch_version": pl.String(),
        "monai_version": pl.String(),
        "ray_version": pl.String(),
        "python_version": pl.String(),
        "git_commit": pl.String(),
        "config_hash": pl.String(),
        "data_fingerprint": pl.String(),
        "n_train": pl.Int64(),
        "n_val": pl.Int64(),
        "n_test": pl.Int64(),
        "best_epoch": pl.Int64(),
        "val_score": pl.Float64(),
    },
    "predictions": {
        "trial_id": pl.String(),
        "dataset": pl.String(),
        "model": pl.String(),
        "protocol": pl.String(),
        "outer_fold": pl.Int64(),
        "seed": pl.Int64(),
        "sample_id": pl.String(),
        "subject_id": pl.String(),
        "session_id": pl.String(),
        "scanner": pl.String(),
        "site": pl.String(),
        "split": pl.String(),
        "perturbation": pl.String(),
        "perturbation_type": pl.String(),
        "severity": pl.Float64(),
        "y_true": pl.Float64(),
        "y_pred": pl.Float64(),
        "score": pl.Float64(),
        "probs": pl.List(pl.Float64()),
        "dice": pl.Float64(),
        "loss": pl.Float64(),
    },
    "epochs": {
        "trial_id": pl.String(),
        "epoch": pl.Int64(),
        "split": pl.String(),
        "loss": pl.Float64(),
        "metric": pl.String(),
        "value": pl.Float64(),
        "lr": pl.Float64(),
        "seconds": pl.Float64(),
    },
    "splits": {
        "trial_id": pl.String(),
        "sample_id": pl.String(),
        "subject_id": pl.String(),
        "session_id": pl.String(),
        "site": pl.String(),
        "role": pl.String(),
    },
}


@dataclass(frozen=True)
class Results:
    """The tables of one results directory, as lazy frames of committed trials only.

    Attributes
    ----------
    root : str
        The directory (or URI) read.
    trials, predictions, epochs, splits : polars.LazyFrame
        The four tables; a table with no file is an empty frame with the contract's schema.
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

    def __repr__(self) -> str:
        notes = f"; missing: {list(self.missing)}" if self.missing else ""
        return f"Results({self.root!r}, {len(self.committed)} committed trials{notes})"


def _list_parquet(root: str, table: str) -> tuple[list[str], Any]:
    """Parquet files directly in ``<root>/<table>/`` (not in ``.tmp/``) and storage options."""
    if "://" not in root or root.startswith("file://"):
        folder = Path(root.removeprefix("file://")) / table
        files = sorted(str(p) for p in folder.glob("*.parquet") if p.is_file())
        return files, None
    from pyarrow import fs as pafs  # remote stores: list with pyarrow, scan with polars

    filesystem, base = pafs.FileSystem.from_uri(root)
    selector = pafs.FileSelector(f"{base.rstrip('/')}/{table}", allow_not_found=True)
    scheme = root.split("://", 1)[0]
    files = sorted(
        f"{scheme}://{info.path}"
        for info in filesystem.get_file_info(selector)
        if info.is_file and info.base_name.endswith(".parquet")
    )
    return files, None


def _scan(files: list[str], table: str) -> pl.LazyFrame:
    if not files:
        return pl.LazyFrame(schema=SCHEMAS[table])
    return pl.scan_parquet(files, missing_columns="insert", extra_columns="ignore")


def _exists(root: str) -> bool:
    if "://" not in root or root.startswith("file://"):
        return Path(root.removeprefix("file://")).is_dir()
    return True  # remote: a missing prefix simply lists no file


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
    last); rows of the other tables whose ``trial_id`` is not committed are filtered out. Files
    under ``<table>/.tmp/`` are never read.

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
    files = {table: _list_parquet(root, table)[0] for table in TABLES}
    notes: list[str] = []
    trials = _scan(files["trials"], "trials")
    committed: tuple[str, ...] = ()
    if files["trials"]:
        require_columns(trials, ["trial_id"], name=f"{root}/trials", why="to identify trials")
        ids = trials.select(pl.col("trial_id").unique()).collect().get_column("trial_id")
        committed = tuple(sorted(ids.drop_nulls().to_list()))
    frames = {"trials": trials}
    for table in TABLES:
        if not files[table]:
            notes.append(f"{table}: no Parquet file in {root}/{table}/")
        if table == "trials":
            continue
        ids = set(committed)
        uncommitted = [f for f in files[table] if Path(f).stem not in ids]
        if uncommitted:
            notes.append(
                f"{table}: {len(uncommitted)} file(s) of uncommitted trials skipped "
                f"(e.g. {Path(uncommitted[0]).name})"
            )
        frame = _scan(files[table], table)
        if files[table]:
            require_columns(frame, ["trial_id"], name=f"{root}/{table}", why="to match trials")
            frame = frame.filter(pl.col("trial_id").is_in(list(committed)))
        frames[table] = frame
    return Results(
        root=root,
        trials=frames["trials"],
        predictions=frames["predictions"],
        epochs=frames["epochs"],
        splits=frames["splits"],
        committed=committed,
        missing=tuple(notes),
    )


def check_leakage(splits: Any) -> pl.DataFrame:
    """Subjects that hold two roles (train / val / test) within one trial.

    Parameters
    ----------
    splits : polars/pandas DataFrame, LazyFrame or Results
        The ``splits`` table (``trial_id``, ``subject_id``, ``role``; ``sample_id`` counted when
        present), or the object returned by :func:`load`.

    Returns
    -------
    polars.DataFrame
        One row per leaked (trial, subject): ``trial_id``, ``subject_id``, ``roles`` (sorted,
        comma-separated), ``n_samples``. Empty when no subject crossed a split.

    Examples
    --------
    >>> s = pl.DataFrame({"trial_id": ["t"] * 3, "sample_id": ["a1", "a2", "b1"],
    ...                   "subject_id": ["a", "a", "b"], "role": ["train", "test", "test"]})
    >>> check_leakage(s).row(0)
    ('t', 'a', 'test,train', 2)
    """
    frame = splits.splits if isinstance(splits, Results) else splits
    lazy = frame if isinstance(frame, pl.LazyFrame) else to_polars(frame, name="splits").lazy()
    require_columns(lazy, ["trial_id", "subject_id", "role"], name="splits", why="for leakage")
    return (
        lazy.group_by("trial_id", "subject_id")
        .agg(
            pl.col("role").unique().sort().str.join(",").alias("roles"),
            pl.col("role").n_unique().alias("_n_roles"),
            pl.len().cast(pl.Int64).alias("n_samples"),
        )
        .filter(pl.col("_n_roles") > 1)
        .drop("_n_roles")
        .sort("trial_id", "subject_id")
        .collect()
    )
