"""What a results directory says about how it was produced: suite, plan, trials, versions, audit.

Read from the results directory alone (docs/results.md): ``suite.yaml`` and ``plan.json`` beside
the tables, the ``trials`` table for statuses, errors, versions, commits, config hashes and data
fingerprints, and the ``splits`` table for the leakage audit. Anything absent becomes a note in
:attr:`Provenance.missing`, so a partial or hand-made directory still gets a report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from raybench_analysis.io import Results, check_leakage, read_text

__all__ = ["Provenance", "merge_provenance", "read_provenance", "read_text"]

_VERSIONS = ("raybench_version", "torch_version", "monai_version", "ray_version", "python_version")


@dataclass
class Provenance:
    """The provenance of one results directory.

    Attributes
    ----------
    suite_yaml, plan:
        The saved suite text and the parsed ``plan.json`` (None when absent).
    trials:
        The ``trials`` table of the committed trials (read once, shared by the report).
    stages:
        ``stage, planned, committed, completed, failed`` per stage.
    failed:
        Failed trials: ``trial_id, stage, dataset, model, outer_fold, seed, attempts, error``.
    versions:
        ``package, version, trials``: each distinct version and how many trials ran with it.
    identity:
        ``dataset, model, config_hashes, data_fingerprints, git_commits``: distinct values per
        (dataset, model) of the trials.
    leakage:
        Leaked (trial, subject) rows of :func:`raybench_analysis.check_leakage`, or None when the
        ``splits`` table is empty (nothing to audit).
    n_audited:
        Trials whose splits were audited.
    missing:
        Notes on what the directory lacks.
    """

    suite_yaml: str | None
    plan: dict[str, Any] | None
    trials: pl.DataFrame
    stages: pl.DataFrame
    failed: pl.DataFrame
    versions: pl.DataFrame
    identity: pl.DataFrame
    leakage: pl.DataFrame | None
    n_audited: int
    missing: list[str] = field(default_factory=list)


def _stage_counts(trials: pl.DataFrame, plan: dict[str, Any] | None) -> pl.DataFrame:
    planned = {st["stage"]: len(st.get("trials", [])) for st in (plan or {}).get("stages", [])}
    stages = list(planned)
    if "stage" in trials.columns:
        stages += [
            s for s in trials["stage"].unique(maintain_order=True).to_list() if s not in planned
        ]
    rows = []
    for stage in stages:
        part = trials.filter(pl.col("stage") == stage) if "stage" in trials.columns else trials
        status = part["status"] if "status" in part.columns else pl.Series([], dtype=pl.String)
        rows.append(
            {
                "stage": stage,
                "planned": planned.get(stage),
                "committed": part.height,
                "completed": int((status == "completed").sum()),
                "failed": int((status == "failed").sum()),
            }
        )
    schema = {
        "stage": pl.String,
        "planned": pl.Int64,
        "committed": pl.Int64,
        "completed": pl.Int64,
        "failed": pl.Int64,
    }
    return pl.DataFrame(rows, schema=schema)


def _versions(trials: pl.DataFrame) -> pl.DataFrame:
    rows = []
    for col in _VERSIONS:
        if col not in trials.columns:
            continue
        counts = trials.group_by(col).len().sort(col, nulls_last=True)
        for value, n in counts.iter_rows():
            rows.append({"package": col.removesuffix("_version"), "version": value, "trials": n})
    return pl.DataFrame(
        rows, schema={"package": pl.String, "version": pl.String, "trials": pl.UInt32}
    )


def _identity(trials: pl.DataFrame) -> pl.DataFrame:
    keys = [c for c in ("dataset", "model") if c in trials.columns]
    cols = {
        "config_hash": "config_hashes",
        "data_fingerprint": "data_fingerprints",
        "git_commit": "git_commits",
    }
    present = {c: name for c, name in cols.items() if c in trials.columns}
    if not keys or not present:
        return pl.DataFrame()

    def listed(col: str) -> pl.Expr:
        # a few values in full; beyond three, the count and the first three
        values = pl.col(col).drop_nulls().unique().sort()
        shown = values.head(3).str.join(", ")
        return (
            pl.when(values.len() > 3)
            .then(pl.format("{} distinct: {}, ...", values.len(), shown))
            .otherwise(shown)
        )

    return (
        trials.group_by(keys, maintain_order=True)
        .agg(listed(c).alias(name) for c, name in present.items())
        .sort(keys)
    )


def _audited(results: Results) -> int:
    """Committed trials with a splits file (one Parquet file per trial: listed, not read)."""
    root = results.root
    if "://" not in root or root.startswith("file://"):
        folder = Path(root.removeprefix("file://")) / "splits"
        return len({p.stem for p in folder.glob("*.parquet")} & set(results.committed))
    return int(results.splits.select(pl.col("trial_id").n_unique()).collect().item())


def read_provenance(results: Results) -> Provenance:
    """Gather the provenance of ``results`` (the object of :func:`raybench_analysis.load`)."""
    missing: list[str] = []
    suite_yaml = read_text(results.root, "suite.yaml")
    if suite_yaml is None:
        missing.append("suite.yaml: the suite as run was not saved in the results directory")
    plan_text = read_text(results.root, "plan.json")
    plan = None
    if plan_text is None:
        missing.append("plan.json: no compiled plan, so trials not yet run cannot be counted")
    else:
        try:
            plan = json.loads(plan_text)
        except ValueError as exc:
            missing.append(f"plan.json: unreadable ({exc})")
    trials = results.trials.collect()
    if plan is not None:
        planned = {t["trial_id"] for st in plan.get("stages", []) for t in st.get("trials", [])}
        absent = planned - set(results.committed)
        if absent:
            missing.append(
                f"{len(absent)} of {len(planned)} planned trials have not committed results yet "
                "(run in progress, interrupted, or not started): resume with `raybench run`"
            )
    failed_cols = [
        "trial_id",
        "stage",
        "dataset",
        "model",
        "outer_fold",
        "seed",
        "attempts",
        "error",
    ]
    failed = (
        trials.filter(pl.col("status") == "failed").select(
            [c for c in failed_cols if c in trials.columns]
        )
        if "status" in trials.columns
        else pl.DataFrame()
    )
    if "error" in failed.columns:
        failed = failed.with_columns(pl.col("error").str.split("\n").list.first())
    n_audited = _audited(results)
    leakage = check_leakage(results) if n_audited else None  # external rows audited too
    if not n_audited:
        missing.append("splits: no splits table, so the leakage audit could not run")
    return Provenance(
        suite_yaml=suite_yaml,
        plan=plan,
        trials=trials,
        stages=_stage_counts(trials, plan),
        failed=failed,
        versions=_versions(trials),
        identity=_identity(trials),
        leakage=leakage,
        n_audited=int(n_audited),
        missing=missing,
    )


def merge_provenance(parts: dict[str, Provenance], trials: pl.DataFrame) -> Provenance:
    """The provenance of several results directories, each table with a ``source_dir`` column.

    ``parts`` maps each directory's label to its :func:`read_provenance`; ``trials`` is the
    combined trials table (models renamed as in the analysis). No suite or plan is shown: each
    directory has its own (notes prefixed with the label say what each lacks).
    """

    def stack(name: str) -> pl.DataFrame:
        frames = [
            getattr(p, name).select(pl.lit(label).alias("source_dir"), pl.all())
            for label, p in parts.items()
            if getattr(p, name) is not None and getattr(p, name).width
        ]
        return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()

    audited = [p.leakage for p in parts.values() if p.leakage is not None]
    return Provenance(
        suite_yaml=None,
        plan=None,
        trials=trials,
        stages=stack("stages"),
        failed=stack("failed"),
        versions=stack("versions"),
        identity=stack("identity"),
        leakage=stack("leakage") if audited else None,
        n_audited=sum(p.n_audited for p in parts.values()),
        missing=[f"{label}: {n}" for label, p in parts.items() for n in p.missing],
    )
