"""Write an :class:`ImportSource` into a results directory: atomic per trial, idempotent.

Each imported trial is committed by :meth:`raybench.store.ResultStore.commit` (written aside,
renamed into place, ``trials`` last), exactly as a raybench run commits its trials. Its id is a
content hash of the source files it was read from (their sha256), of the mapping and of its
identity inside the source (model, dataset, fold, seed, data group or label), so:

- importing the same source again finds every trial committed and changes nothing;
- an import cut short is completed by the next one (only missing trials are committed);
- a changed source (a file edited, another mapping) gives other ids: it is refused unless
  ``replace=True``, which removes the trials of the earlier import and commits the new ones.

The directory also gets ``import.json`` (format, source, mapping, files and their hashes, tool
version, trial ids, hierarchy): the provenance of the whole import, written before the trials so
that an interrupted import is recognised; and a ``suite.yaml`` that holds only
``analysis.hierarchy`` (where ``raybench analyze`` reads it): ``site, subject_id`` when every
prediction has a site, else ``subject_id``, since a null site cannot be resampled. A directory
written by ``raybench run`` (or holding trials of unknown origin) is never imported into.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl
import pyarrow as pa
from raybench_analysis.vocabulary import DEFAULT_HIERARCHY

from raybench.errors import ResultsError
from raybench.importers.base import ImportedTrial, ImportSource, conform_frame
from raybench.plan.ids import content_hash
from raybench.store import ResultStore, collect_provenance, table_from_rows
from raybench.store.schemas import TABLES, conform

__all__ = ["IMPORT_FILE", "ImportReport", "trial_id", "write_import"]

#: The provenance file of an imported results directory.
IMPORT_FILE = "import.json"

#: The analysis settings of an import (``analysis.hierarchy``), where ``raybench analyze`` looks.
SETTINGS_FILE = "suite.yaml"

#: Bumped when what goes into an imported trial's id changes meaning.
IMPORT_ID_VERSION = 1


@dataclass
class ImportReport:
    """What an import did: counts, the leakage verdict and notes (rows not joined, ...)."""

    results: str
    format: str
    source: str
    trials: int
    committed: int
    unchanged: int
    removed: int
    predictions: int
    leakage: str
    notes: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    hierarchy: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of the report."""
        return asdict(self)


def trial_id(source: ImportSource, trial: ImportedTrial) -> str:
    """Content hash of the trial's files, the mapping and its identity within the source."""
    payload = {
        "import": IMPORT_ID_VERSION,
        "format": source.format,
        "files": trial.files,
        "mapping": source.mapping,
        "model": trial.model,
        "dataset": trial.dataset,
        "protocol": trial.protocol,
        "outer_fold": trial.outer_fold,
        "seed": trial.seed,
        "key": trial.key,
    }
    return content_hash(payload, 16)


def _tables(
    source: ImportSource, trial: ImportedTrial, tid: str, prov: dict[str, Any]
) -> dict[str, pa.Table]:
    """The contract tables of one imported trial, ready for :meth:`ResultStore.commit`."""
    trial_cols = {
        "trial_id": tid,
        "dataset": trial.dataset,
        "model": trial.model,
        "protocol": trial.protocol,
        "outer_fold": trial.outer_fold,
        "seed": trial.seed,
    }
    pred = trial.predictions.with_columns(pl.lit(v).alias(k) for k, v in trial_cols.items())
    tables: dict[str, pa.Table] = {"predictions": _arrow("predictions", pred)}
    if trial.splits is not None:
        splits = trial.splits.with_columns(trial_id=pl.lit(tid))
        tables["splits"] = _arrow("splits", splits)
    if trial.epochs is not None and trial.epochs.height:
        tables["epochs"] = _arrow("epochs", trial.epochs.with_columns(trial_id=pl.lit(tid)))
    splits_roles = trial.splits.get_column("role") if trial.splits is not None else None
    counts = {
        f"n_{role}": int((splits_roles == role).sum()) if splits_roles is not None else None
        for role in ("train", "val", "test")
    }
    row = {
        **trial_cols,
        "suite": None,
        "task": trial.task,
        "stage": "refit",
        "inner_fold": None,
        "params": json.dumps(trial.params, sort_keys=True, default=str),
        "status": "completed",
        "attempts": 1,
        "config_hash": content_hash({"params": trial.params, "key": trial.key}),
        "data_fingerprint": content_hash(trial.files),
        "best_epoch": trial.best_epoch,
        "val_score": trial.val_score,
        "raybench_version": prov.get("raybench_version"),
        "python_version": prov.get("python_version"),
        "source_format": source.format,
        "source_path": str(source.path),
        "source_files": json.dumps(trial.files, sort_keys=True),
        "source_tool_version": source.tool_version,
        **counts,
    }
    tables["trials"] = table_from_rows("trials", [row])
    return tables


def _arrow(table: str, frame: pl.DataFrame) -> pa.Table:
    """``frame``'s contract columns as the store's arrow table (extra columns dropped)."""
    return conform(table, conform_frame(table, frame).to_arrow())


def _manifest(source: ImportSource, ids: Sequence[str]) -> dict[str, Any]:
    return {
        "format": source.format,
        "source": str(source.path),
        "mapping": source.mapping,
        "tool_version": source.tool_version,
        "files": source.files,
        "source_hash": content_hash(source.files),
        "trial_ids": sorted(ids),
        "hierarchy": hierarchy(source),
    }


def hierarchy(source: ImportSource) -> list[str]:
    """The resampling levels of the imported data: ``site, subject_id`` when every prediction
    has a site, else ``subject_id`` alone (a null site cannot be resampled)."""
    sites = all(
        t.predictions.get_column("site").null_count() == 0
        for t in source.trials
        if "site" in t.predictions.columns
    )
    known = sites and all("site" in t.predictions.columns for t in source.trials)
    return [lvl for lvl in DEFAULT_HIERARCHY if known or lvl != "site"]


def _analysis_settings(source: ImportSource, manifest: dict[str, Any]) -> bytes:
    """The ``suite.yaml`` of an import: only the analysis hierarchy ``raybench analyze`` reads."""
    levels = ", ".join(manifest["hierarchy"])
    return (
        "# Written by `raybench import` (docs/import.md); not a runnable suite. It holds only the\n"
        "# analysis hierarchy `raybench analyze` reads; the provenance is in import.json.\n"
        f"name: {json.dumps(f'import-{source.format}')}\n"
        f"analysis:\n  hierarchy: [{levels}]\n"
    ).encode()


def _remove_trial(store: ResultStore, tid: str) -> None:
    """Uncommit ``tid`` (its ``trials`` file first), then delete its other files."""
    for table in ("trials", *[t for t in TABLES if t != "trials"]):
        with suppress(FileNotFoundError):
            store.fs.delete_file(store.path(table, tid))


def _changed_files(old: dict[str, str], new: dict[str, str]) -> str:
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if not changed:
        return "the mapping or options changed"
    shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
    return f"files changed, added or removed: {shown}"


def write_import(
    source: ImportSource, results: str, leakage: str, *, replace: bool = False
) -> ImportReport:
    """Commit ``source``'s trials into the results directory ``results`` (see the module doc).

    Raises :class:`~raybench.errors.ResultsError` when ``results`` holds a raybench run or trials
    of unknown origin, or another import whose source changed and ``replace`` is False.
    """
    store = ResultStore(results)
    ids = {trial_id(source, t): t for t in source.trials}
    if len(ids) != len(source.trials):
        raise ResultsError(
            f"{source.path}: two imported trials have the same identity (model, dataset, fold, "
            "seed); map a column that tells them apart (e.g. seed=..., model=...)"
        )
    manifest = _manifest(source, list(ids))
    with store.lock():
        raw = store.read_file(IMPORT_FILE)
        inv = store.inventory()
        present = set(inv.committed) | set(inv.damaged)
        if raw is None and (present or store.read_file(SETTINGS_FILE) is not None):
            raise ResultsError(
                f"results directory {store.root!r} holds a raybench run (or trials of unknown "
                "origin) and no import.json: import into a new directory; comparing imported "
                "models with a run across directories is docs/import.md's next step"
            )
        previous = json.loads(raw.decode()) if raw is not None else None
        stale = present - set(ids)
        changed = previous is not None and previous.get("trial_ids") != manifest["trial_ids"]
        if previous is not None and (changed or stale) and not replace:
            why = _changed_files(previous.get("files", {}), manifest["files"])
            if previous.get("format") != source.format:
                why = f"it holds a {previous.get('format')!r} import"
            raise ResultsError(
                f"results directory {store.root!r} holds an earlier import of "
                f"{previous.get('source')!r} that differs from this one ({why}). Pass "
                "--replace to remove the earlier trials and import this source, or give "
                "another --results directory."
            )
        if raw is None or json.loads(raw.decode()) != manifest:
            store.write_file(IMPORT_FILE, json.dumps(manifest, indent=2, sort_keys=True).encode())
        settings = _analysis_settings(source, manifest)
        if store.read_file(SETTINGS_FILE) != settings:
            store.write_file(SETTINGS_FILE, settings)
        for tid in sorted(stale):
            _remove_trial(store, tid)
        prov = collect_provenance()
        todo = [tid for tid in sorted(ids) if tid not in inv.statuses]
        for tid in todo:
            store.commit(tid, _tables(source, ids[tid], tid, prov))
    return ImportReport(
        results=store.root,
        format=source.format,
        source=str(source.path),
        trials=len(ids),
        committed=len(todo),
        unchanged=len(ids) - len(todo),
        removed=len(stale),
        predictions=sum(t.predictions.height for t in source.trials),
        leakage=leakage,
        notes=list(source.notes),
        models=sorted({t.model for t in source.trials}),
        hierarchy=manifest["hierarchy"],
    )
