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
    arrow_schema,
    check_leakage,
    inventory,
    polars_schema,
    scan_committed,
)

__all__ = [
    "SCHEMAS",
    "TABLES",
    "Results",
    "check_leakage",
    "check_uri",
    "is_remote",
    "join_uri",
    "load",
    "location",
    "read_text",
    "write_bytes",
]

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


#: Query keys of a pyarrow URI that carry a secret: refused (they would be printed in resume
#: commands and logs and saved in summary.json); credentials come from the environment.
SECRET_KEYS = ("access_key", "secret_key", "session_token")


def is_remote(root: str) -> bool:
    """True for a URI of another filesystem than the local one (``s3://``, ``gs://``)."""
    return "://" in root and not root.startswith("file://")


def check_uri(uri: str) -> None:
    """Refuse a URI that carries credentials (``s3://KEY:SECRET@bucket/...`` or a secret in its
    query): results URIs are printed, saved and logged; credentials belong in the environment.
    """
    scheme, _, rest = uri.partition("://")
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    query = rest.partition("?")[2]
    keys = {part.split("=", 1)[0].lower() for part in query.split("&") if part}
    if "@" in authority or keys & set(SECRET_KEYS):
        raise AnalysisError(
            f"the {scheme}:// results URI carries credentials; URIs are printed, logged and "
            "saved (resume commands, summary.json), so give them in the environment instead "
            "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE / ~/.aws/credentials; "
            "see docs/object-storage.md)"
        )


def join_uri(uri: str, name: str) -> str:
    """``uri/name`` for a local path or a URI, keeping a URI's query (``?endpoint_override=...``)
    at its end.

    >>> join_uri("s3://bkt/run?scheme=http", "analysis")
    's3://bkt/run/analysis?scheme=http'
    >>> join_uri("/data/run/", "analysis")
    '/data/run/analysis'
    """
    head, mark, query = uri.partition("?") if is_remote(uri) else (uri, "", "")
    return f"{head.rstrip('/')}/{name}{mark}{query}"


def location(root: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path on it) of a local directory or a filesystem URI.

    A URI's endpoint, region and scheme may be in its query (``?endpoint_override=...``);
    credentials come from the environment (:func:`check_uri` refuses them in the URI).
    """
    from pyarrow import fs as pafs

    if not is_remote(root):
        return pafs.LocalFileSystem(), str(Path(root.removeprefix("file://")).resolve())
    check_uri(root)
    try:
        filesystem, base = pafs.FileSystem.from_uri(root)
    except (ValueError, OSError) as exc:
        raise AnalysisError(
            f"results location {root!r} is not a usable filesystem URI ({exc}); give a local "
            "directory or a URI such as s3://bucket/prefix"
        ) from exc
    return filesystem, base.rstrip("/")


def read_text(root: str, name: str) -> str | None:
    """The text of ``<root>/<name>`` (local path or filesystem URI), or None when absent."""
    filesystem, base = location(root)
    try:
        with filesystem.open_input_stream(f"{base}/{name}") as stream:
            return stream.read().decode("utf-8")
    except (FileNotFoundError, IsADirectoryError):
        return None
    except OSError as exc:  # an object store says "not found" in the message only
        if "not found" in str(exc).lower() or "does not exist" in str(exc).lower():
            return None
        raise


def write_bytes(root: str, name: str, data: bytes) -> None:
    """Write ``<root>/<name>`` (local path or filesystem URI) in one piece: an object store
    receives one complete object (a reader never sees part of it)."""
    filesystem, base = location(root)
    folder, _, _ = f"{base}/{name}".rpartition("/")
    filesystem.create_dir(folder, recursive=True)
    with filesystem.open_output_stream(f"{base}/{name}") as out:
        out.write(data)


def _scan(files: list[str], table: str, filesystem: Any = None) -> pl.LazyFrame:
    """Committed files of ``table``: polars reads local files; a remote filesystem's through a
    pyarrow dataset on that filesystem (its endpoint and credentials as configured there)."""
    if not files:
        return pl.LazyFrame(schema=SCHEMAS[table])
    if filesystem is not None:
        import pyarrow.dataset as ds

        dataset = ds.dataset(
            files, schema=arrow_schema(table), format="parquet", filesystem=filesystem
        )
        return pl.scan_pyarrow_dataset(dataset)
    return pl.scan_parquet(
        files, schema=SCHEMAS[table], missing_columns="insert", extra_columns="ignore"
    )


def _exists(root: str) -> bool:
    if not is_remote(root):
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
    filesystem, base = location(root)
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
    remote = filesystem if is_remote(root) else None
    frames = {
        t: scan_committed(inv, t, lambda paths, t=t: _scan(list(paths), t, remote))
        for t in TABLE_NAMES
    }
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
