"""The results contract, declared once: the tables, their columns, what is committed, leakage.

A raybench results directory holds one folder per table (``trials/``, ``predictions/``,
``epochs/``, ``splits/``) with one Parquet file per trial. Everything about that layout lives
here, in the analysis package (the lighter of the two), and both sides derive from it:

- :data:`CONTRACT` declares every table column by column (name, type, nullability, meaning).
  :func:`arrow_schema` is the schema the store writes, :func:`polars_schema` the one the reader
  checks, :func:`markdown_table` the tables of docs/results.md. Adding a table is one entry here.
- :func:`inventory` is the one committed-results scanner: which trials are committed, which are
  damaged (a file unreadable, of the wrong schema, or with another row count than its ``trials``
  row recorded) and which files are left over from commits cut short. ``raybench.store``,
  ``raybench status`` and :func:`raybench_analysis.load` all call it.
- :func:`check_leakage` is the one audit of the ``splits`` table.

Integrity: at commit the store records in the ``trials`` row how many rows each other table's file
has (``rows_predictions``, ``rows_epochs``, ``rows_splits``). :func:`inventory` compares these with
the Parquet footers (metadata only: no data page is read), so a truncated or replaced file is
found without reading whole files.

After changing a declaration, ``python -c "import raybench_analysis.contract as c;
c.write_docs('docs/results.md')"`` rewrites the generated column tables of the docs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from raybench_analysis._frames import AnalysisError, require_columns, to_polars

__all__ = [
    "BATCH_PREFIX",
    "BATCH_ROWS_KEY",
    "CONTRACT",
    "DATA_TABLES",
    "OPTIONAL_TABLES",
    "TABLE_NAMES",
    "Column",
    "Damage",
    "Inventory",
    "TableSpec",
    "arrow_schema",
    "check_leakage",
    "count_column",
    "inventory",
    "is_batch",
    "markdown_table",
    "polars_schema",
    "raw_rows",
    "render_docs",
    "scan_committed",
    "schema_problem",
    "write_docs",
]

#: The column types of the contract and how each is written in docs/results.md.
TYPES: dict[str, str] = {
    "string": "string",
    "int64": "int64",
    "float64": "float64",
    "timestamp": "timestamp[us, UTC]",
    "list<float64>": "list<float64>",
    "bool": "bool",
}


@dataclass(frozen=True)
class Column:
    """One column: ``type`` is a key of :data:`TYPES`; ``doc`` is one line for the docs."""

    name: str
    type: str
    doc: str
    nullable: bool = True

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(
                f"column {self.name!r}: type {self.type!r} is not one of {list(TYPES)}"
            )


@dataclass(frozen=True)
class TableSpec:
    """One table of the contract: its name, what one row is, and its columns in file order."""

    name: str
    grain: str
    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        """Column names in file order."""
        return [c.name for c in self.columns]


def _cols(*specs: tuple[str, str, str] | tuple[str, str, str, bool]) -> tuple[Column, ...]:
    return tuple(Column(*spec) for spec in specs)


#: Columns of a trial's draw of training subjects (``validation.train_resampling``), in ``trials``
#: and denormalised in ``predictions``; docs/training-distribution.md.
_RESAMPLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    (
        "train_fraction",
        "float64",
        "fraction of the outer training fold's subjects drawn for this trial (1 for the whole "
        "fold); null without `validation.train_resampling`",
    ),
    (
        "train_resample",
        "int64",
        "index of the draw of training subjects within (fold, fraction); null for the whole "
        "fold (no draw)",
    ),
    (
        "n_train_subjects",
        "int64",
        "subjects in the train role, bootstrap copies counted (the learning curve's x)",
    ),
)

_PREDICTIONS = TableSpec(
    "predictions",
    "one row per (trial, sample, split, perturbation, variant)",
    _cols(
        ("trial_id", "string", "the trial that made the prediction", False),
        ("dataset", "string", "dataset name in the suite (denormalised from `trials`)"),
        ("model", "string", "model name in the suite (denormalised from `trials`)"),
        ("protocol", "string", "validation protocol (see `trials.protocol`)"),
        ("outer_fold", "int64", "fold index within the protocol"),
        ("seed", "int64", "the suite seed of the trial"),
        ("sample_id", "string", "unique image id within the dataset"),
        ("subject_id", "string", "subject of the image (hierarchy level)"),
        ("session_id", "string", "session of the image (hierarchy level)"),
        ("scanner", "string", "scanner of the image (hierarchy level)"),
        ("site", "string", "site of the image (hierarchy level)"),
        (
            "split",
            "string",
            "`test` (refit trials' test fold) or `val` (search trials; refit trials' validation "
            "samples, which calibrate and are never test rows), or `external` (a saved refit "
            "model on a dataset never used for training or selection; docs/predict.md)",
        ),
        ("perturbation", "string", "`none`, or the perturbation id (`gaussian_noise(std=0.1)`)"),
        ("perturbation_type", "string", "`none`, `gaussian_noise`, `bias_field`, ..."),
        ("severity", "float64", "the perturbation's strength parameter; null for `none`"),
        ("y_true", "float64", "class index / target value; null for segmentation"),
        ("y_pred", "float64", "predicted class index / predicted value"),
        ("score", "float64", "probability of the positive class (binary classification)"),
        ("probs", "list<float64>", "class probabilities (classification)"),
        ("dice", "float64", "per-sample Dice of the foreground (segmentation)"),
        ("loss", "float64", "per-sample loss (of this variant's prediction)"),
        (
            "variant",
            "string",
            "`raw` (the network's output; null in files that predate variants), `calibrated`, "
            "`input_noise` or `mc_dropout` (docs/uncertainty.md); never pool two variants",
        ),
        ("draws", "int64", "`input_noise` / `mc_dropout`: stochastic forward passes K"),
        (
            "input_noise_sd",
            "float64",
            "`input_noise`: SD over the K draws of the score (binary), of the top class's "
            "probability (multi-class) or of the value (regression)",
        ),
        ("input_noise_q05", "float64", "`input_noise`: 5% quantile over the draws, same quantity"),
        ("input_noise_q50", "float64", "`input_noise`: median over the draws, same quantity"),
        ("input_noise_q95", "float64", "`input_noise`: 95% quantile over the draws, same quantity"),
        ("predictive_entropy", "float64", "`mc_dropout`: H[mean_k p_k] (nats)"),
        ("expected_entropy", "float64", "`mc_dropout`: mean_k H[p_k] (nats; aleatoric part)"),
        (
            "mutual_information",
            "float64",
            "`mc_dropout`: predictive − expected entropy (nats; epistemic part, >= 0)",
        ),
        ("temperature", "float64", "`calibrated`: T fitted on the trial's `val` rows"),
        *_RESAMPLE_COLUMNS,
    ),
)

_EPOCHS = TableSpec(
    "epochs",
    "one row per (trial, epoch, split)",
    _cols(
        ("trial_id", "string", "the trial", False),
        ("epoch", "int64", "0-based epoch"),
        ("split", "string", "`train` or `val`"),
        ("loss", "float64", "mean loss over the split"),
        ("metric", "string", "name of the selection metric (val rows)"),
        ("value", "float64", "value of the selection metric (val rows)"),
        ("lr", "float64", "learning rate at the end of the epoch"),
        ("seconds", "float64", "wall time of the epoch"),
    ),
)

_SPLITS = TableSpec(
    "splits",
    "one row per (trial, sample) — and per copy of a sample a bootstrap draw trains on twice "
    "(docs/training-distribution.md): the audit trail of who was trained and tested on what",
    _cols(
        ("trial_id", "string", "the trial", False),
        ("sample_id", "string", "image id"),
        ("subject_id", "string", "subject of the image"),
        ("session_id", "string", "session of the image"),
        ("site", "string", "site of the image"),
        ("role", "string", "`train`, `val` or `test`"),
    ),
)

_EXPLANATIONS = TableSpec(
    "explanations",
    "one row per (trial, explained test sample, method, metric); docs/explanations.md",
    _cols(
        ("trial_id", "string", "the refit trial whose network was explained", False),
        ("dataset", "string", "dataset name in the suite (denormalised from `trials`)"),
        ("model", "string", "model name in the suite (denormalised from `trials`)"),
        ("protocol", "string", "validation protocol (see `trials.protocol`)"),
        ("outer_fold", "int64", "fold index within the protocol"),
        ("seed", "int64", "the suite seed of the trial"),
        ("sample_id", "string", "the explained test image"),
        ("subject_id", "string", "subject of the image (hierarchy level)"),
        ("session_id", "string", "session of the image (hierarchy level)"),
        ("scanner", "string", "scanner of the image (hierarchy level)"),
        ("site", "string", "site of the image (hierarchy level)"),
        ("method", "string", "attribution method: `gradcam`, `integrated_gradients`, ..."),
        ("target", "string", "the explained output: positive or predicted class, or `value`"),
        (
            "perturbation",
            "string",
            "`none`, or the perturbation id of a `perturbation_spearman` row (the map of the "
            "perturbed image against the clean one)",
        ),
        ("metric", "string", "`auroc`, `dice`, `max_sensitivity`, ... (EXPLANATION_METRICS)"),
        ("value", "float64", "the metric's value; NaN when undefined (see `note`)"),
        ("note", "string", "why a value is NaN (no or empty mask, non-finite map); else null"),
        (
            "threshold",
            "float64",
            "`dice`/`hd95` rows: the segmentation threshold (fraction of the map's maximum) "
            "chosen on the trial's validation samples; else null",
        ),
        ("map_path", "string", "the kept map, relative to the results directory; else null"),
        (
            "slices_path",
            "string",
            "the kept sample's slices (NPZ: image, mask, every map) for the report; else null",
        ),
    ),
)

_FEATURES = TableSpec(
    "features",
    "one row per (predict entry, image): the penultimate-layer features of a refit network on "
    "the real test images of its own fold and on the samples of a generated dataset it was "
    "scored on; docs/generated.md",
    _cols(
        ("trial_id", "string", "the predict entry (network × generated dataset)", False),
        ("refit_trial_id", "string", "the refit trial whose network made the features"),
        ("model", "string", "model name in the suite (denormalised from `trials`)"),
        ("protocol", "string", "validation protocol of the refit"),
        ("outer_fold", "int64", "fold index of the refit"),
        ("seed", "int64", "the suite seed of the refit"),
        ("dataset", "string", "dataset of the image: the generated one, or its `from` dataset"),
        ("origin", "string", "`test`: a real test image of the refit's fold; `generated`"),
        ("sample_id", "string", "the image"),
        ("subject_id", "string", "subject of the image"),
        ("label", "string", "the image's class (task.label)"),
        ("features", "list<float64>", "input of the network's last linear layer"),
    ),
)

#: The tables other than ``trials``, each a file per trial whose row count ``trials`` records.
DATA_TABLES: tuple[str, ...] = ("predictions", "epochs", "splits", "explanations", "features")

#: Tables only some suites fill (an absent one is not worth a note when loading results).
OPTIONAL_TABLES: tuple[str, ...] = ("explanations", "features")


def count_column(table: str) -> str:
    """The ``trials`` column recording how many rows ``table``'s file of the trial holds."""
    return f"rows_{table}"


_TRIALS = TableSpec(
    "trials",
    "one row per trial; its file is renamed into place last, so it marks the trial committed",
    _cols(
        ("trial_id", "string", "content hash of everything that determines the result", False),
        ("suite", "string", "suite name"),
        ("dataset", "string", "dataset name in the suite"),
        ("model", "string", "model name in the suite"),
        ("task", "string", "`classification`, `regression` or `segmentation`"),
        (
            "stage",
            "string",
            "`search` (inner-fold trial of one search point), `refit`, or `predict` (a saved "
            "refit model evaluated on another dataset: `validation.external`, `raybench predict`)",
        ),
        ("protocol", "string", "`outer` or the `strategy` of an `extra` protocol"),
        ("outer_fold", "int64", "fold index within the protocol (repeat x k + fold)"),
        ("inner_fold", "int64", "inner fold index of `search` trials; null for refits"),
        ("seed", "int64", "the suite seed of this trial"),
        ("params", "string", "JSON object of the search point (resolved hyper-parameters)"),
        (
            "status",
            "string",
            "`completed`, `failed` or `pruned` (a search trial stopped early by the suite's "
            "search scheduler; docs/search.md)",
        ),
        ("error", "string", "first line of the error of a failed trial"),
        ("traceback", "string", "full traceback of a failed trial"),
        ("attempts", "int64", "number of attempts (1 + retries used)"),
        ("started_at", "timestamp", "wall clock at the start of the trial"),
        ("finished_at", "timestamp", "wall clock at the end of the trial"),
        ("train_seconds", "float64", "training time"),
        ("eval_seconds", "float64", "evaluation time"),
        ("node", "string", "hostname that ran the trial"),
        ("device", "string", "`cpu`, `cuda:0`, ..."),
        ("amp", "bool", "mixed precision (float16 autocast) used: training.amp on a GPU"),
        ("cudnn_deterministic", "bool", "torch.backends.cudnn.deterministic during the trial"),
        ("cudnn_benchmark", "bool", "torch.backends.cudnn.benchmark (autotuning) during the trial"),
        (
            "deterministic_algorithms",
            "bool",
            "torch.use_deterministic_algorithms during the trial (CPU: on; GPU: cuDNN switches)",
        ),
        ("raybench_version", "string", "provenance: raybench version"),
        ("torch_version", "string", "provenance: torch version"),
        ("monai_version", "string", "provenance: MONAI version"),
        ("ray_version", "string", "provenance: Ray version"),
        ("python_version", "string", "provenance: Python version"),
        ("git_commit", "string", "commit of the raybench checkout; null outside git"),
        ("config_hash", "string", "sha256 of the resolved trial config"),
        ("data_fingerprint", "string", "content hash of the dataset manifest and file stats"),
        ("n_train", "int64", "samples in the train role"),
        ("n_val", "int64", "samples in the val role"),
        ("n_test", "int64", "samples in the test role"),
        ("best_epoch", "int64", "epoch selected by early stopping on validation data"),
        ("val_score", "float64", "validation score at `best_epoch` (the selection criterion)"),
        (
            "source_format",
            "string",
            "imported trials: `table`, `clinicadl` or `nnunet` (docs/import.md); null for runs",
        ),
        ("source_path", "string", "imported trials: the source file or folder, as given"),
        (
            "source_files",
            "string",
            "imported trials: JSON object, path in the source -> sha256 of each file read",
        ),
        ("source_tool_version", "string", "imported trials: version of the tool, when known"),
        (
            "resources_override",
            "string",
            'JSON of suite resources the run overrode, e.g. `{"gpu": [0.5, 0.0]}` (suite value, '
            "run value) for `raybench run --gpus 0`; null when none",
        ),
        *_RESAMPLE_COLUMNS,
        (
            "model_sha256",
            "string",
            "sha256 of the saved model `models/<trial_id>.pt` (refit with "
            "`training.save_model: best`); `predict` entries: of the model they evaluated",
        ),
        (
            "refit_trial_id",
            "string",
            "`predict` entries: the refit trial whose saved model made the predictions; else null",
        ),
        *(
            (count_column(t), "int64", f"rows in `{t}/<trial_id>.parquet`, set by the store")
            for t in DATA_TABLES
        ),
    ),
)

#: Every table of the contract, in commit order (``trials`` last: it marks the trial committed).
CONTRACT: dict[str, TableSpec] = {
    t.name: t for t in (_PREDICTIONS, _EPOCHS, _SPLITS, _EXPLANATIONS, _FEATURES, _TRIALS)
}
TABLE_NAMES: tuple[str, ...] = tuple(CONTRACT)


def _spec(table: str) -> TableSpec:
    try:
        return CONTRACT[table]
    except KeyError:
        raise AnalysisError(
            f"unknown results table {table!r}; the tables are {list(TABLE_NAMES)}"
        ) from None


# --------------------------------------------------------------------------- schemas


def _polars_type(kind: str) -> pl.DataType:
    return {
        "string": pl.String(),
        "int64": pl.Int64(),
        "float64": pl.Float64(),
        "timestamp": pl.Datetime("us", "UTC"),
        "list<float64>": pl.List(pl.Float64()),
        "bool": pl.Boolean(),
    }[kind]


def _arrow_type(kind: str) -> Any:
    import pyarrow as pa

    return {
        "string": pa.string(),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "list<float64>": pa.list_(pa.float64()),
        "bool": pa.bool_(),
    }[kind]


def polars_schema(table: str) -> dict[str, pl.DataType]:
    """Column name -> polars dtype of ``table`` (what the reader expects and empty frames get)."""
    return {c.name: _polars_type(c.type) for c in _spec(table).columns}


def arrow_schema(table: str) -> Any:
    """The ``pyarrow.Schema`` of ``table``, nullability included (what the store writes)."""
    import pyarrow as pa

    return pa.schema(
        [pa.field(c.name, _arrow_type(c.type), nullable=c.nullable) for c in _spec(table).columns]
    )


def _kind_of(arrow_type: Any) -> str | None:
    """The contract type an arrow type reads as (``large_string`` is a string, ...), or None."""
    import pyarrow as pa
    import pyarrow.types as pt

    if pt.is_string(arrow_type) or pt.is_large_string(arrow_type) or arrow_type == pa.string_view():
        return "string"
    if arrow_type == pa.int64():
        return "int64"
    if arrow_type == pa.float64():
        return "float64"
    if arrow_type == pa.bool_():
        return "bool"
    if (
        pt.is_timestamp(arrow_type)
        and arrow_type.unit == "us"
        and arrow_type.tz in ("UTC", "+00:00")
    ):
        return "timestamp"
    if (pt.is_list(arrow_type) or pt.is_large_list(arrow_type)) and arrow_type.value_type == (
        pa.float64()
    ):
        return "list<float64>"
    return None


def schema_problem(table: str, schema: Any) -> str | None:
    """Why a file's arrow ``schema`` breaks ``table``'s contract, or None when it fits.

    A file fits when every non-nullable column is present and every contract column it holds has
    the contract's type (all-null columns fit any type). Columns the file lacks read as null and
    unknown columns are ignored, so hand-written or older files stay readable.
    """
    import pyarrow as pa

    present = {f.name: f.type for f in schema}
    for col in _spec(table).columns:
        if col.name not in present:
            if not col.nullable:
                return f"column {col.name!r} is missing"
            continue
        found = present[col.name]
        if found != pa.null() and _kind_of(found) != col.type:
            return f"column {col.name!r} is {found}, the contract says {TYPES[col.type]}"
    return None


# --------------------------------------------------------------------------- scanner


@dataclass(frozen=True)
class Damage:
    """A committed trial whose files cannot be trusted: the first bad ``path`` and why."""

    trial_id: str
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class Inventory:
    """What a results directory holds, as found by :func:`inventory`.

    Attributes
    ----------
    root : str
        The directory scanned (a path of ``filesystem``).
    statuses : dict
        ``trial_id -> status`` of the committed, verified trials.
    damaged : dict
        ``trial_id -> Damage`` of trials whose ``trials`` row exists but whose files are
        unreadable, of the wrong schema or of another row count than recorded. They count as
        not committed: a run redoes them.
    files : dict
        ``table -> paths`` of the files holding committed trials' rows (sorted): per-trial
        files and batch files.
    orphans : dict
        ``table -> paths`` of files whose trial has no ``trials`` row (a commit cut short).
    hidden : dict
        ``batch file path -> trial ids`` whose rows in that file must not be read: trials
        committed again since (a per-trial file or a newer batch holds them), damaged or not
        committed. Read the files with :func:`scan_committed`, which applies it.
    """

    root: str
    statuses: dict[str, str]
    damaged: dict[str, Damage]
    files: dict[str, tuple[str, ...]]
    orphans: dict[str, tuple[str, ...]] = field(default_factory=dict)
    hidden: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def committed(self) -> tuple[str, ...]:
        """Ids of the committed, verified trials (completed or failed), sorted."""
        return tuple(sorted(self.statuses))


#: Name prefix of a batch file (``<table>/_batch-<id>.parquet``: many trials' rows, written by
#: ``raybench compact``); no trial id starts with it (the store refuses such ids).
BATCH_PREFIX = "_batch-"
#: Parquet key-value metadata of a batch data file: JSON ``{trial_id: rows}``.
BATCH_ROWS_KEY = b"raybench.rows"
#: Trials per batch file that ``raybench compact`` writes at most (bounds its memory: one batch is
#: read at a time); readers accept any size.
BATCH_TRIALS = 20_000


def is_batch(name: str) -> bool:
    """True for the base name of a batch file (``_batch-<id>.parquet``) or a batch id key."""
    return name.startswith(BATCH_PREFIX)


def _list_parquet(fs: Any, folder: str) -> dict[str, str]:
    """``name -> path`` of the Parquet files directly in ``folder`` (``.tmp/`` excluded): the
    trial id for a per-trial file, ``_batch-<id>`` for a batch file."""
    import pyarrow.fs as pafs

    selector = pafs.FileSelector(folder, allow_not_found=True, recursive=False)
    return {
        info.base_name[: -len(".parquet")]: info.path
        for info in fs.get_file_info(selector)
        if info.type == pafs.FileType.File and info.base_name.endswith(".parquet")
    }


def _footer(fs: Any, path: str) -> tuple[Any, int, dict[bytes, bytes]]:
    """(arrow schema, row count, key-value metadata) of a Parquet file from its footer alone."""
    import pyarrow.parquet as pq

    with fs.open_input_file(path) as handle:
        meta = pq.ParquetFile(handle).metadata
        return meta.schema.to_arrow_schema(), meta.num_rows, dict(meta.metadata or {})


def _unreadable(exc: BaseException) -> str:
    return f"unreadable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"


def _read_trials_file(fs: Any, path: str, trial_id: str | None) -> tuple[list[dict], str]:
    """(the file's ``trials`` rows, "") or ([], why the file cannot be trusted).

    ``trial_id``: the one trial a per-trial file must hold; None for a batch file.
    """
    import pyarrow.parquet as pq

    try:
        with fs.open_input_file(path) as handle:
            table = pq.ParquetFile(handle).read()  # half the cost of pq.read_table (no dataset)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        return [], _unreadable(exc)
    problem = schema_problem("trials", table.schema)
    if problem:
        return [], problem
    if trial_id is not None:
        ids = set(table.column("trial_id").to_pylist())
        if ids != {trial_id} or table.num_rows != 1:
            return [], f"expected one row of trial {trial_id!r}, found {table.num_rows} of {ids}"
    return table.to_pylist(), ""


def _verify(
    fs: Any, root: str, trial_id: str, row: Mapping[str, Any], found: dict
) -> Damage | None:
    """The first problem with a per-trial ``trial_id``'s data files, or None; ``found``:
    table -> name -> path."""
    for table in DATA_TABLES:
        expected = row.get(count_column(table))
        path = found[table].get(trial_id)
        if path is None:
            if expected:
                where = f"{root}/{table}/{trial_id}.parquet"
                return Damage(trial_id, where, f"missing; trials recorded {expected} rows")
            continue
        try:
            schema, rows, _ = _footer(fs, path)
        except Exception as exc:
            return Damage(trial_id, path, _unreadable(exc))
        problem = schema_problem(table, schema)
        if problem:
            return Damage(trial_id, path, problem)
        if expected is not None and rows != expected:
            return Damage(trial_id, path, f"holds {rows} rows; trials recorded {expected}")
    return None


def _batch_counts(fs: Any, table: str, path: str) -> tuple[dict[str, int] | None, str]:
    """(``trial_id -> rows`` of a batch data file, "") or (None, why it cannot be trusted)."""
    import json

    try:
        schema, rows, meta = _footer(fs, path)
        counts = json.loads(meta[BATCH_ROWS_KEY].decode())
    except KeyError:
        return None, f"a batch file without its {BATCH_ROWS_KEY.decode()!r} metadata"
    except Exception as exc:
        return None, _unreadable(exc)
    problem = schema_problem(table, schema)
    if problem:
        return None, problem
    if sum(counts.values()) != rows:
        return None, f"holds {rows} rows; its metadata records {sum(counts.values())}"
    return counts, ""


def _verify_batch(
    fs: Any, root: str, name: str, rows: Mapping[str, Mapping[str, Any]], found: dict
) -> Damage | None:
    """The first problem with batch ``name``'s data files for the trials in ``rows``, or None."""
    for table in DATA_TABLES:
        path = found[table].get(name)
        expected = {t: r.get(count_column(table)) for t, r in rows.items()}
        if path is None:
            if any(expected.values()):
                where = f"{root}/{table}/{name}.parquet"
                return Damage("", where, "missing; its trials recorded rows there")
            continue
        counts, why = _batch_counts(fs, table, path)
        if counts is None:
            return Damage("", path, why)
        for trial_id, n in expected.items():
            if n is not None and counts.get(trial_id, 0) != n:
                held = counts.get(trial_id, 0)
                return Damage(
                    trial_id, path, f"holds {held} rows of {trial_id}; trials recorded {n}"
                )
    return None


def _per_trial(
    fs: Any, root: str, trial_id: str, path: str, found: dict, row: dict | None = None
) -> tuple[str, Any]:
    """("ok", status) or ("damaged", Damage) of one per-trial commit (``row``: its ``trials``
    row when already read and checked by :func:`_fast_trial_rows`)."""
    if row is None:
        rows, why = _read_trials_file(fs, path, trial_id)
        if not rows:
            return "damaged", Damage(trial_id, path, why)
        row = rows[0]
    problem = _verify(fs, root, trial_id, row, found)
    if problem is not None:
        return "damaged", problem
    return "ok", str(row.get("status") or "unknown")


def _fast_trial_rows(items: list[tuple[str, str]]) -> dict[str, dict]:
    """The ``trials`` rows of many local per-trial files in one multi-threaded polars read.

    Returns ``trial_id -> row`` (status and row counts) for the files that hold exactly one row
    of their trial; the others, and all of them when the read fails (a damaged file, a column of
    another type), are left to the careful per-file check, which says what is wrong.
    """
    if len(items) < 2:
        return {}
    wanted = ["trial_id", "status", *(count_column(t) for t in DATA_TABLES)]
    try:
        frame = (
            pl.scan_parquet(  # every column, by the contract's types: a mismatch raises
                [path for _, path in items],
                schema=polars_schema("trials"),
                missing_columns="insert",
                extra_columns="ignore",
                include_file_paths="__path",
            )
            .collect()  # before selecting: a projection would skip the other columns' check
            .select(*wanted, "__path")
        )
    except Exception:  # any file the fast read cannot take: check each file
        return {}
    by_path = {path: trial_id for trial_id, path in items}
    counts = frame.group_by("__path").len()
    single = set(counts.filter(pl.col("len") == 1)["__path"].to_list())
    out: dict[str, dict] = {}
    for row in frame.filter(pl.col("__path").is_in(list(single))).iter_rows(named=True):
        if by_path.get(row["__path"]) == row["trial_id"]:
            out[row["trial_id"]] = row
    return out


def inventory(filesystem: Any, root: str, *, threads: int | None = None) -> Inventory:
    """Scan the results directory ``root`` on a pyarrow ``filesystem``: the one scanner.

    A trial is committed when its ``trials`` row exists and is verified. Two layouts, mixed
    freely (docs/results.md):

    - per trial: ``trials/<trial_id>.parquet`` is readable with one row of this trial, and each
      other table's ``<table>/<trial_id>.parquet`` is readable (its footer), fits the contract's
      schema and holds the row count the ``trials`` row recorded (``rows_<table>``; not checked
      when null, as in files written before the counts existed);
    - batches (``raybench compact``): ``trials/_batch-<id>.parquet`` holds many trials' rows, and
      each other table's ``_batch-<id>.parquet`` records in its footer metadata how many rows of
      each trial it holds; these counts must match the ``trials`` rows. A damaged batch file
      makes every trial of the batch damaged.

    A trial held by a per-trial file and a batch (a compaction cut short, or a trial run again
    after it was compacted) is read from its per-trial files; one held by two batches from the
    newest. Everything else is reported, never raised. Files are read by ``threads`` threads
    (pyarrow reads and decodes without the GIL; on object stores each request waits on the
    network).
    """
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow.fs as pafs

    if threads is None:
        threads = 4 if isinstance(filesystem, pafs.LocalFileSystem) else 16
    root = root.rstrip("/")
    found = {t: _list_parquet(filesystem, f"{root}/{t}") for t in TABLE_NAMES}
    singles = {n: p for n, p in found["trials"].items() if not is_batch(n)}
    batches = sorted((n for n in found["trials"] if is_batch(n)), reverse=True)  # newest first
    statuses: dict[str, str] = {}
    damaged: dict[str, Damage] = {}
    items = sorted(singles.items())

    local = isinstance(filesystem, pafs.LocalFileSystem)
    fast = _fast_trial_rows(items) if local else {}

    def per_trial(kv: tuple[str, str]) -> tuple[str, Any]:
        return _per_trial(filesystem, root, kv[0], kv[1], found, fast.get(kv[0]))

    def batch(name: str) -> tuple[list[dict], str]:
        return _read_trials_file(filesystem, found["trials"][name], None)

    if threads <= 1:
        checked, read = [per_trial(kv) for kv in items], [batch(n) for n in batches]
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            checked, read = list(pool.map(per_trial, items)), list(pool.map(batch, batches))
    for (trial_id, _), (outcome, value) in zip(items, checked, strict=True):
        if outcome == "ok":
            statuses[trial_id] = value
        else:
            damaged[trial_id] = value
    hidden: dict[str, set[str]] = {}
    owners: set[str] = set()  # batches holding at least one committed trial
    claimed = set(singles)
    for name, (rows, why) in zip(batches, read, strict=True):
        path = found["trials"][name]
        if not rows and why:  # its trials are unknown: the batch is reported as damaged
            damaged[name] = Damage(name, path, why)
            continue
        owned = {r["trial_id"]: r for r in rows if r["trial_id"] not in claimed}
        hidden[name] = {r["trial_id"] for r in rows} - set(owned)
        claimed |= set(owned)
        problem = _verify_batch(filesystem, root, name, owned, found)
        if problem is not None:
            for trial_id in owned:
                damaged[trial_id] = Damage(trial_id, problem.path, problem.reason)
            hidden[name] |= set(owned)
            continue
        for trial_id, row in owned.items():
            statuses[trial_id] = str(row.get("status") or "unknown")
        if owned:
            owners.add(name)
    statuses = dict(sorted(statuses.items()))
    files = {
        t: tuple(
            sorted(
                p for n, p in found[t].items() if (n in singles and n in statuses) or n in owners
            )
        )
        for t in found
    }
    orphans = {
        t: tuple(
            sorted(
                p
                for n, p in found[t].items()
                if n not in found["trials"] and (is_batch(n) or n not in claimed)
            )
        )
        for t in DATA_TABLES
    }
    hidden_paths = {
        found[t][n]: frozenset(ids)
        for n, ids in hidden.items()
        if ids and n in owners
        for t in found
        if n in found[t]
    }
    return Inventory(
        root, statuses, damaged, files, {t: o for t, o in orphans.items() if o}, hidden_paths
    )


def scan_committed(inv: Inventory, table: str, scan: Any) -> pl.LazyFrame:
    """The committed rows of ``table``: ``scan(paths) -> LazyFrame`` over the inventory's files,
    each batch file with hidden trials scanned apart and filtered (see :attr:`Inventory.hidden`).
    """
    plain = [p for p in inv.files[table] if p not in inv.hidden]
    frames = [scan(plain)] if plain else []
    for path in inv.files[table]:
        if path in inv.hidden:
            frames.append(scan([path]).filter(~pl.col("trial_id").is_in(sorted(inv.hidden[path]))))
    if not frames:
        return pl.LazyFrame(schema=polars_schema(table))
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical_relaxed")


# --------------------------------------------------------------------------- leakage


def check_leakage(splits: Any, predictions: Any = None, trials: Any = None) -> pl.DataFrame:
    """Subjects that hold two roles within one trial, or that are both external and development
    subjects: the one audit.

    Parameters
    ----------
    splits : polars/pandas DataFrame, LazyFrame, or an object with a ``splits`` attribute
        The ``splits`` table (``trial_id``, ``subject_id``, ``role``), or the object returned by
        :func:`raybench_analysis.load` (its ``predictions`` and ``trials`` are then used too).
    predictions, trials : DataFrame or LazyFrame, optional
        With both, the external audit runs as well: a subject of a ``split = "external"`` row
        that is in the ``splits`` table of a trial of its model's development dataset (the
        dataset of the entry's ``refit_trial_id``) is a leak of role ``external`` plus the roles
        it had there.

    Returns
    -------
    polars.DataFrame
        One row per leaked (trial, subject): ``trial_id``, ``subject_id``, ``roles`` (sorted,
        comma-separated), ``n_samples`` (rows of that subject in the trial: split rows, or the
        external samples predicted). Empty when no subject crossed a split.

    Examples
    --------
    >>> s = pl.DataFrame({"trial_id": ["t"] * 3, "sample_id": ["a1", "a2", "b1"],
    ...                   "subject_id": ["a", "a", "b"], "role": ["train", "test", "test"]})
    >>> check_leakage(s).row(0)
    ('t', 'a', 'test,train', 2)
    >>> p = pl.DataFrame({"trial_id": ["e"], "sample_id": ["b9"], "subject_id": ["b"],
    ...                   "split": ["external"]})
    >>> t = pl.DataFrame({"trial_id": ["t", "e"], "dataset": ["dev", "ext"],
    ...                   "refit_trial_id": [None, "t"]})
    >>> check_leakage(s, p, t).rows()
    [('e', 'b', 'external,test', 1), ('t', 'a', 'test,train', 2)]
    """
    if predictions is None and trials is None:
        predictions = getattr(splits, "predictions", None)
        trials = getattr(splits, "trials", None)
    frame = getattr(splits, "splits", splits)
    lazy = _lazy(frame, "splits")
    require_columns(lazy, ["trial_id", "subject_id", "role"], name="splits", why="for leakage")
    within = (
        lazy.group_by("trial_id", "subject_id")
        .agg(
            pl.col("role").unique().sort().str.join(",").alias("roles"),
            pl.col("role").n_unique().alias("_n_roles"),
            pl.len().cast(pl.Int64).alias("n_samples"),
        )
        .filter(pl.col("_n_roles") > 1)
        .drop("_n_roles")
    )
    if predictions is not None and trials is not None:
        external = _external_leaks(lazy, _lazy(predictions, "predictions"), _lazy(trials, "trials"))
        if external is not None:
            within = pl.concat([within, external])
    return within.sort("trial_id", "subject_id").collect()


def _lazy(frame: Any, name: str) -> pl.LazyFrame:
    return frame if isinstance(frame, pl.LazyFrame) else to_polars(frame, name=name).lazy()


def _external_leaks(
    splits: pl.LazyFrame, predictions: pl.LazyFrame, trials: pl.LazyFrame
) -> pl.LazyFrame | None:
    """External rows whose subject is a development subject of their model's dataset."""
    p_cols = predictions.collect_schema().names()
    t_cols = trials.collect_schema().names()
    if not {"trial_id", "subject_id", "split"} <= set(p_cols) or not {
        "trial_id",
        "dataset",
    } <= set(t_cols):
        return None
    sample = pl.col("sample_id") if "sample_id" in p_cols else pl.col("subject_id")
    parent = (
        pl.col("refit_trial_id").fill_null(pl.col("trial_id"))
        if "refit_trial_id" in t_cols
        else pl.col("trial_id")
    )
    dataset_of = trials.select(pl.col("trial_id").alias("_refit"), pl.col("dataset").alias("_dev"))
    development = (
        trials.select("trial_id", pl.col("dataset").alias("_dev"))
        .join(splits.select("trial_id", "subject_id", "role"), on="trial_id")
        .select("_dev", "subject_id", "role")
        .unique()
    )
    external = (
        predictions.filter(pl.col("split") == "external")
        .select("trial_id", "subject_id", sample.alias("_sample"))
        .unique()
        .join(trials.select("trial_id", parent.alias("_refit")), on="trial_id")
        .join(dataset_of, on="_refit")
    )
    return (
        external.join(development, on=["_dev", "subject_id"])
        .group_by("trial_id", "subject_id")
        .agg(
            # "external" sorts before "test", "train" and "val": the roles stay sorted
            (pl.lit("external,") + pl.col("role").unique().sort().str.join(",")).alias("roles"),
            pl.col("_sample").n_unique().cast(pl.Int64).alias("n_samples"),
        )
    )


# --------------------------------------------------------------------------- variants


def raw_rows(predictions: pl.DataFrame) -> pl.DataFrame:
    """The rows of the network's own predictions: ``variant`` is ``raw``, or null (files written
    before variants existed, imported trials). Every analysis that scores models reads these only;
    the other variants are told apart by the uncertainty analyses.

    >>> df = pl.DataFrame({"variant": ["raw", None, "calibrated"], "y": [1, 2, 3]})
    >>> raw_rows(df)["y"].to_list()
    [1, 2]
    """
    if "variant" not in predictions.columns:
        return predictions
    return predictions.filter(pl.col("variant").is_null() | (pl.col("variant") == "raw"))


# --------------------------------------------------------------------------- docs


def markdown_table(table: str) -> str:
    """The column table of ``table`` as it appears in docs/results.md (generated from here)."""
    lines = ["| column | type | null | meaning |", "|---|---|---|---|"]
    for col in _spec(table).columns:
        null = "yes" if col.nullable else "no"
        lines.append(f"| {col.name} | {TYPES[col.type]} | {null} | {col.doc} |")
    return "\n".join(lines)


_BLOCK = re.compile(r"(<!-- contract:(\w+) -->\n)(.*?)(<!-- /contract -->)", re.DOTALL)


def render_docs(text: str, tables: Iterable[str] = TABLE_NAMES) -> str:
    """``text`` with every ``<!-- contract:NAME -->`` block replaced by :func:`markdown_table`.

    Raises :class:`AnalysisError` when a table of ``tables`` has no block in ``text``.
    """
    missing = [t for t in tables if f"<!-- contract:{t} -->" not in text]
    if missing:
        raise AnalysisError(f"no '<!-- contract:NAME -->' block for tables {missing}")
    return _BLOCK.sub(lambda m: f"{m[1]}{markdown_table(m[2])}\n{m[4]}", text)


def write_docs(path: str | Path) -> None:
    """Rewrite the generated column tables of the Markdown file at ``path`` in place."""
    target = Path(path)
    target.write_text(render_docs(target.read_text()))
