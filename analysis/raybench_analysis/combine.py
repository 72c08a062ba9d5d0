"""Several results directories as one analysis: a raybench run beside imported results.

:func:`combine` stacks the tables of several results directories (raybench runs, or imports of
ClinicaDL, nnU-Net or any predictions table: docs/import.md) with a :data:`SOURCE_COLUMN` naming
the directory of every row, renames the models whose names collide across directories to
``label:model`` and gives back one :class:`~raybench_analysis.io.Results` that
:func:`raybench_analysis.summarize` and the report read as if it were one run.

:func:`compare_across` then compares every pair of models in the way their test sets allow:

- the **same test samples in the same outer folds**: :func:`raybench_analysis.compare` as within
  one run (paired bootstrap, corrected resampled t-test);
- the **same test samples, other folds** (e.g. nnU-Net's own 5 folds beside raybench's): a paired
  bootstrap over the shared subjects of the difference of the two models' estimates, each its
  metric per own (fold, seed) cell averaged over seeds then folds (the ``models`` table's
  estimand, so the difference is that of the two ``models`` rows); no t-test (it needs shared
  folds);
- **different test samples**: paired comparison is refused; the difference of two independent
  hierarchical bootstraps, each resampling its own sites and subjects
  (:func:`raybench_analysis.bootstrap.unpaired_difference`), said so in ``method``.

The column naming the source directory lives here, not in the results contract: no results
directory holds it; it exists only in a combined analysis.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from statsmodels.stats.multitest import multipletests

from raybench_analysis._frames import AnalysisError, as_names, require_columns, to_polars
from raybench_analysis.bootstrap import (
    Evaluator,
    Hierarchy,
    auc_inputs,
    build_hierarchy,
    check_defined,
    draw_counts,
    interval_from_replicates,
    nested_means,
    unpaired_difference,
)
from raybench_analysis.compare import compare
from raybench_analysis.contract import raw_rows
from raybench_analysis.io import Results, load
from raybench_analysis.metrics import Metric, get_metric
from raybench_analysis.settings import read_saved_suite

__all__ = [
    "PAIRINGS",
    "SOURCE_COLUMN",
    "Combined",
    "combine",
    "compare_across",
    "pairing",
    "same_subjects",
]

#: The column of a combined table naming the results directory of each row (by its label).
SOURCE_COLUMN = "source_dir"

#: How two models' test sets relate, as the ``pairing`` column of :func:`compare_across` says.
PAIRINGS = ("same folds", "same subjects", "unpaired")

#: Settings a saved suite holds that two combined directories may disagree on.
_SETTINGS = ("metrics", "hierarchy", "alpha", "n_boot")

_TABLES = ("trials", "predictions", "epochs", "splits", "explanations")


@dataclass
class Combined:
    """Several results directories read as one.

    Attributes
    ----------
    results:
        One :class:`~raybench_analysis.io.Results` whose tables stack those of every directory,
        each with :data:`SOURCE_COLUMN`, colliding model names and trial ids renamed.
    sources:
        Label -> directory (or URI), in the order given; the first directory's saved settings
        lead (:meth:`settings`).
    renamed:
        ``source_dir, model, renamed_to``: the models whose names collided across directories.
    saved:
        Label -> the saved suite's analysis settings (:func:`read_saved_suite`; ``{}`` for none).
    notes:
        What the combination changed, in words (renames, the settings used).
    parts:
        Label -> that directory's own :class:`~raybench_analysis.io.Results` (its provenance).
    """

    results: Results
    sources: dict[str, str]
    renamed: pl.DataFrame
    saved: dict[str, dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    parts: dict[str, Results] = field(default_factory=dict)

    def settings(self, given: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """(saved settings to analyse with, notes): the first directory's, overrides named.

        ``given`` holds the arguments of :func:`raybench_analysis.summarize` (None: not given).
        A setting on which the directories disagree takes the first directory's value unless
        it was given; a note says which, so the analysis states what it used.
        """
        labels = list(self.sources)
        first = self.saved[labels[0]]
        notes = []
        tasks = {lbl: s["task"] for lbl, s in self.saved.items() if "task" in s}
        if len(set(tasks.values())) > 1:
            raise AnalysisError(
                f"results: the directories hold different tasks ({tasks}); only results of one "
                "task type can be combined"
            )
        for key in _SETTINGS:
            values = {lbl: self.saved[lbl].get(key) for lbl in labels}
            distinct = {repr(v) for v in values.values()}
            if len(distinct) < 2:
                continue
            listed = ", ".join(f"{lbl}: {_shown(v)}" for lbl, v in values.items())
            arg = "metric" if key == "metrics" else key
            used = (
                "the argument given overrides them"
                if given.get(arg) is not None
                else f"the first directory's ({labels[0]}) is used; pass --{arg.replace('_', '-')} "
                "to choose"
            )
            notes.append(f"settings: the directories disagree on {key} ({listed}); {used}")
        return dict(first), notes


def _shown(value: Any) -> str:
    if value is None:
        return "not set"
    if isinstance(value, list | tuple):
        return ">".join(str(v) for v in value) if value else "none"
    return str(value)


def _labels(roots: Sequence[str], labels: Sequence[str] | None) -> list[str]:
    """One distinct label per directory: its name, then parent/name, then name-2, name-3, ..."""
    if labels is not None:
        out = [str(x) for x in labels]
        if len(out) != len(roots) or len(set(out)) != len(out) or not all(out):
            raise AnalysisError(
                f"labels={list(labels)}: give one distinct, non-empty label per results "
                f"directory ({len(roots)} given)"
            )
        return out
    names = [Path(r.rstrip("/")).name or r for r in roots]
    if len(set(names)) < len(names):
        names = ["/".join(Path(r.rstrip("/")).parts[-2:]) for r in roots]
    out: list[str] = []
    for name in names:
        label, k = name, 2
        while label in out:
            label, k = f"{name}-{k}", k + 1
        out.append(label)
    return out


def _distinct(frame: pl.LazyFrame, column: str) -> set[Any]:
    return set(frame.select(pl.col(column).drop_nulls().unique()).collect().to_series().to_list())


def combine(
    results: Sequence[str | Path | Results], labels: Sequence[str] | None = None
) -> Combined:
    """Read several results directories as one, each row labelled with its directory.

    Parameters
    ----------
    results:
        Two or more results directories (local paths or pyarrow URIs) or objects of
        :func:`raybench_analysis.load`. Each must hold committed trials.
    labels:
        A label per directory for :data:`SOURCE_COLUMN` and renamed models; default each
        directory's name (``parent/name`` when two names are equal, then ``-2``, ``-3``).

    Returns
    -------
    Combined
        The stacked tables as one :class:`~raybench_analysis.io.Results`; models whose name
        appears in more than one directory become ``label:model`` in every directory that has
        them (listed in ``renamed`` and ``notes``); trial ids found in several directories
        become ``label/trial_id``.

    Examples
    --------
    >>> import tempfile
    >>> from raybench_analysis.simulate import simulate_predictions, write_results_dir
    >>> a = write_results_dir(simulate_predictions(n_sites=2, subjects_per_site=4, n_folds=2,
    ...                       n_seeds=1), Path(tempfile.mkdtemp()) / "run")
    >>> b = write_results_dir(simulate_predictions(n_sites=2, subjects_per_site=4, n_folds=2,
    ...                       n_seeds=1, models={"model_a": 1.0, "other": 0.5}),
    ...                       Path(tempfile.mkdtemp()) / "imported")
    >>> both = combine([a, b])
    >>> sorted(both.results.trials.collect()["model"].unique())
    ['imported:model_a', 'model_b', 'model_c', 'other', 'run:model_a']
    """
    loaded = [load(r) if isinstance(r, str | Path) else r for r in results]
    if len(loaded) < 2:
        raise AnalysisError(
            f"combine: {len(loaded)} results directory given; give two or more (one directory "
            "is analysed by summarize(directory))"
        )
    for res in loaded:
        if not res.committed:
            raise AnalysisError(
                f"results: {res.root!r} is not a raybench results directory: no committed trial "
                "(trials/*.parquet) found; see docs/results.md"
            )
    roots = [str(r.root) for r in loaded]
    names = _labels(roots, labels)
    tasks = {lbl: sorted(_distinct(r.trials, "task")) for lbl, r in zip(names, loaded, strict=True)}
    if len({t for ts in tasks.values() for t in ts}) > 1:
        raise AnalysisError(
            f"results: the directories hold different tasks ({tasks}); only results of one task "
            "type can be combined"
        )
    models = {lbl: _distinct(r.trials, "model") for lbl, r in zip(names, loaded, strict=True)}
    seen_models: dict[str, int] = {}
    seen_trials: dict[str, int] = {}
    for lbl, res in zip(names, loaded, strict=True):
        for m in models[lbl]:
            seen_models[m] = seen_models.get(m, 0) + 1
        for t in res.committed:
            seen_trials[t] = seen_trials.get(t, 0) + 1
    clash = {m for m, n in seen_models.items() if n > 1}
    clash_trials = {t for t, n in seen_trials.items() if n > 1}
    renamed_rows = [
        {SOURCE_COLUMN: lbl, "model": m, "renamed_to": f"{lbl}:{m}"}
        for lbl in names
        for m in sorted(models[lbl] & clash)
    ]
    frames: dict[str, list[pl.LazyFrame]] = {t: [] for t in _TABLES}
    for lbl, res in zip(names, loaded, strict=True):
        mapping = {r["model"]: r["renamed_to"] for r in renamed_rows if r[SOURCE_COLUMN] == lbl}
        for table in _TABLES:
            frame = getattr(res, table).with_columns(pl.lit(lbl).alias(SOURCE_COLUMN))
            names_ = frame.collect_schema().names()
            if "trial_id" in names_ and clash_trials:
                frame = frame.with_columns(
                    pl.when(pl.col("trial_id").is_in(list(clash_trials)))
                    .then(pl.lit(f"{lbl}/") + pl.col("trial_id"))
                    .otherwise(pl.col("trial_id"))
                    .alias("trial_id")
                )
            if "model" in names_ and mapping:
                frame = frame.with_columns(pl.col("model").replace(mapping))
            frames[table].append(frame)
    committed = tuple(
        f"{lbl}/{t}" if t in clash_trials else t
        for lbl, res in zip(names, loaded, strict=True)
        for t in res.committed
    )
    missing = tuple(f"{lbl}: {n}" for lbl, r in zip(names, loaded, strict=True) for n in r.missing)
    stacked = {t: pl.concat(frames[t], how="diagonal_relaxed") for t in _TABLES}
    combined = Results(
        root=" + ".join(roots),
        committed=committed,
        missing=missing,
        **stacked,
    )
    renamed = pl.DataFrame(
        renamed_rows, schema={SOURCE_COLUMN: pl.String, "model": pl.String, "renamed_to": pl.String}
    )
    notes = [
        f"combined {len(names)} results directories: "
        + "; ".join(f"{lbl} = {root}" for lbl, root in zip(names, roots, strict=True))
        + f" (column {SOURCE_COLUMN!r} names each row's)"
    ]
    if renamed.height:
        notes.append(
            "models named alike in several directories were renamed label:model: "
            + ", ".join(f"{r['model']} -> {r['renamed_to']}" for r in renamed_rows)
        )
    if clash_trials:
        notes.append(
            f"{len(clash_trials)} trial id(s) found in several directories (e.g. a run and its "
            "re-import) are prefixed label/ in the combined tables"
        )
    saved = {lbl: read_saved_suite(root) for lbl, root in zip(names, roots, strict=True)}
    return Combined(
        combined, dict(zip(names, roots, strict=True)), renamed, saved, notes,
        dict(zip(names, loaded, strict=True)),
    )  # fmt: skip


# --- pairing -------------------------------------------------------------------------------------


def _test_sets(frame: pl.DataFrame) -> dict[str, tuple[frozenset, frozenset]]:
    """Per model: its set of (outer_fold, sample_id) and its set of sample_id."""
    out = {}
    keys = frame.select("model", "outer_fold", "sample_id").unique()
    for (model,), part in keys.group_by("model"):
        out[str(model)] = (
            frozenset(part.select("outer_fold", "sample_id").iter_rows()),
            frozenset(part["sample_id"].to_list()),
        )
    return out


def pairing(predictions: Any, model_a: str, model_b: str) -> str:
    """How models ``a`` and ``b`` were tested: one of :data:`PAIRINGS`.

    ``"same folds"`` when they predicted the same (outer_fold, sample_id) pairs, ``"same
    subjects"`` when the same sample ids in other folds, else ``"unpaired"`` (test samples
    differ, even in part). Reads the clean test rows of ``predictions``.

    Examples
    --------
    >>> rows = pl.DataFrame({"model": ["a", "a", "b", "b", "c"], "outer_fold": [0, 1, 0, 0, 0],
    ...                      "sample_id": ["x", "y", "x", "y", "x"]})
    >>> pairing(rows, "a", "b"), pairing(rows, "a", "c")
    ('same subjects', 'unpaired')
    """
    frame = _clean(to_polars(predictions, name="predictions"), "none")
    require_columns(frame, ["model", "outer_fold", "sample_id"], name="predictions")
    sets = _test_sets(frame)
    for m in (model_a, model_b):
        if m not in sets:
            raise AnalysisError(f"model={m!r} has no test rows; models: {sorted(sets)}")
    return _kind(sets[model_a], sets[model_b])


def _kind(a: tuple[frozenset, frozenset], b: tuple[frozenset, frozenset]) -> str:
    if a[0] == b[0]:
        return PAIRINGS[0]
    return PAIRINGS[1] if a[1] == b[1] else PAIRINGS[2]


def _clean(frame: pl.DataFrame, perturbation: str | None) -> pl.DataFrame:
    if "split" in frame.columns:
        frame = frame.filter(pl.col("split") == "test")
    frame = raw_rows(frame)
    if perturbation is not None and "perturbation" in frame.columns:
        frame = frame.filter(pl.col("perturbation") == perturbation)
    return frame


# --- the bootstraps ------------------------------------------------------------------------------


def _model_replicates(
    frame: pl.DataFrame,
    metric: Metric,
    levels: list[str],
    strata: list[str],
    n_boot: int,
    rng: np.random.Generator,
    scheme: str,
) -> tuple[dict[str, tuple[float, np.ndarray]], Hierarchy]:
    """Per model of ``frame``: (estimate, replicates), all models on the same resampled units.

    Each model's statistic is its metric per own (outer_fold, seed) cell, averaged over seeds
    then folds (:func:`raybench_analysis.bootstrap.nested_means`), as the ``models`` table.
    """
    h = build_hierarchy(frame, levels or ["sample_id"], strata)
    sums = metric.kind == "sums" and metric.stats is not None
    stats = metric.stats(frame) if sums and metric.stats is not None else None
    labels = None if sums else auc_inputs(frame, metric)
    index = (
        frame.with_row_index("_row")
        .group_by("model", "outer_fold", "seed", maintain_order=True)
        .agg(pl.col("_row"))
    )
    cells: dict[str, dict[tuple, Evaluator]] = {}
    for model, fold, seed, rows in index.iter_rows():
        r = np.asarray(rows, dtype=np.int64)
        cells.setdefault(model, {})[(fold, seed)] = Evaluator(
            metric,
            None,
            h.unit[r],
            h.n_units,
            stats=None if stats is None else stats[r],
            labels=None if labels is None else (labels[0][r], labels[1][r]),
        )
    chunks: dict[str, list[np.ndarray]] = {m: [] for m in cells}
    for counts in draw_counts(h, n_boot, rng, scheme=scheme):
        for model, cell in cells.items():
            chunks[model].append(nested_means(cell, counts)[()])
    ones = np.ones((1, h.n_units))
    out = {
        m: (float(nested_means(cell, ones)[()][0]), np.concatenate(chunks[m]))
        for m, cell in cells.items()
    }
    return out, h


@dataclass(frozen=True)
class _Setup:
    """What every pair of one group shares."""

    metric: Metric
    levels: list[str]
    strata: list[str]
    n_boot: int
    seed: int
    alpha: float
    scheme: str
    interval: str
    where: str


def _row(a: str, b: str, kind: str, ci: Mapping[str, float], method: str, unit: str) -> dict:
    return {
        "model_a": a,
        "model_b": b,
        "estimate": ci["estimate"],
        "se": ci["se"],
        "ci_low": ci["ci_low"],
        "ci_high": ci["ci_high"],
        "p_value": ci["p_value"],
        "method": method,
        "unit": unit,
        "n_resamples": ci["n_boot"],
        "pairing": kind,
    }


def _shared_subjects(frame: pl.DataFrame, a: str, b: str, s: _Setup) -> dict:
    """Paired bootstrap of the difference of two models' own-fold estimates on shared units."""
    part = frame.filter(pl.col("model").is_in([a, b]))
    rng = np.random.default_rng(s.seed)
    reps, h = _model_replicates(part, s.metric, s.levels, s.strata, s.n_boot, rng, s.scheme)
    (est_a, rep_a), (est_b, rep_b) = reps[a], reps[b]
    diff = rep_a - rep_b
    check_defined(int(np.isfinite(diff).sum()), len(diff), s.where, f"{a} − {b}")
    ci = interval_from_replicates(
        est_a - est_b, diff, h.n_top, s.alpha, s.interval, h.n_strata, n_total=len(diff)
    )
    method, unit = h.scheme(s.scheme, s.interval)
    method = (
        f"paired {method}; same test subjects, other folds: each model's metric per own "
        "fold×seed cell, averaged"
    )
    return _row(a, b, PAIRINGS[1], {"estimate": est_a - est_b, **ci}, method, unit)


def _independent(
    frame: pl.DataFrame, models: list[str], s: _Setup
) -> dict[str, tuple[float, np.ndarray, Hierarchy]]:
    """Each model bootstrapped on its own units, with its own generator (independent draws)."""
    out = {}
    for k, model in enumerate(models):
        part = frame.filter(pl.col("model") == model)
        rng = np.random.default_rng([s.seed, k])
        reps, h = _model_replicates(part, s.metric, s.levels, s.strata, s.n_boot, rng, s.scheme)
        est, values = reps[model]
        check_defined(int(np.isfinite(values).sum()), len(values), s.where, model)
        out[model] = (est, values, h)
    return out


def _unpaired(boot: dict[str, tuple[float, np.ndarray, Hierarchy]], a: str, b: str, s: _Setup):
    (est_a, rep_a, h_a), (est_b, rep_b, h_b) = boot[a], boot[b]
    ci = unpaired_difference(
        est_a, rep_a, h_a.n_top, est_b, rep_b, h_b.n_top, s.alpha, s.interval,
        n_strata_a=h_a.n_strata, n_strata_b=h_b.n_strata,
    )  # fmt: skip
    kind, unit = h_a.scheme(s.scheme, s.interval)
    test = "Welch–Satterthwaite t" if s.interval != "percentile" else "percentile"
    method = (
        f"unpaired: difference of independent {kind.split(',')[0]}s (test subjects differ), "
        f"{test} interval"
    )
    return _row(a, b, PAIRINGS[2], ci, method, f"{unit} (each model its own)")


def compare_across(
    predictions: Any,
    metric: str | Metric = "auc",
    levels: Sequence[str] = ("subject_id",),
    by: str | Sequence[str] | None = ("dataset",),
    method: str | Sequence[str] = ("bootstrap", "corrected_ttest"),
    correction: str = "holm",
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    perturbation: str | None = "none",
    *,
    scheme: str = "cluster",
    interval: str = "t",
    strata: str | Sequence[str] | None = None,
) -> pl.DataFrame:
    """Every pair of models compared as their test sets allow: paired, or unpaired when not.

    Parameters
    ----------
    predictions:
        Predictions (docs/results.md), typically the combined table of :func:`combine` (with
        :data:`SOURCE_COLUMN`): ``model``, ``outer_fold``, ``seed``, ``sample_id``, the
        ``levels``, ``by`` and metric columns. Test rows of the raw variant are used.
    metric, levels, by, correction, n_boot, seed, alpha, perturbation, scheme, interval, strata:
        As in :func:`raybench_analysis.compare`.
    method:
        Methods for pairs tested on the same folds (as :func:`raybench_analysis.compare`);
        other pairs get one bootstrap row (paired or unpaired).

    Returns
    -------
    polars.DataFrame
        The columns of :func:`raybench_analysis.compare` (``n_splits`` null for pairs whose folds
        differ), plus ``pairing`` (one of :data:`PAIRINGS`) and, when the predictions have
        :data:`SOURCE_COLUMN`, ``source_a`` and ``source_b``. p-values are adjusted over all
        pairs of a group, per family of methods (bootstrap rows, paired or not; t-test rows;
        permutation rows).

    Notes
    -----
    *Same folds*: :func:`raybench_analysis.compare` on the models of that test design, so two
    directories holding the same run give differences of exactly 0. *Same subjects, other
    folds*: replicate r draws the shared units once and evaluates both models on them, each as
    its ``models`` estimate (metric per own fold×seed cell, seeds then folds averaged; not a
    pooled out-of-fold metric, which would mix the score scales of the fold models and bias an
    AUC: Forman & Scholz 2010; Airola et al. 2011); the interval is that of
    :func:`raybench_analysis.compare`'s bootstrap. The corrected t-test is not computed: it
    differences per-fold scores and needs the same folds. *Different samples*: the two estimates
    come from independent hierarchical bootstraps, each resampling its own sites and subjects,
    and :func:`raybench_analysis.bootstrap.unpaired_difference` gives the interval (Efron &
    Tibshirani 1993, ch. 8; Davison & Hinkley 1997, §3.2). Samples shared by the two test sets,
    if any, are then treated as independent: conservative when the models err on the same
    patients. The estimand is the difference of the two models' expected performance on their
    populations (new patients, or new sites with ``site`` on top): a difference of test sets
    (other sites, other case mix) is part of it.

    References
    ----------
    Efron, B. & Tibshirani, R. J. (1993). An Introduction to the Bootstrap. Chapman & Hall, ch. 8.
    Davison, A. C. & Hinkley, D. V. (1997). Bootstrap Methods and their Application. Cambridge
        University Press, §3.2, §3.8.
    Forman, G. & Scholz, M. (2010). Apples-to-apples in cross-validation studies: pitfalls in
        classifier performance measurement. ACM SIGKDD Explorations 12(1), 49–57.
    Airola, A., Pahikkala, T., Waegeman, W., De Baets, B. & Salakoski, T. (2011). An
        experimental comparison of cross-validation techniques for estimating the area under
        the ROC curve. Computational Statistics & Data Analysis 55(4), 1828–1844.

    Examples
    --------
    >>> from raybench_analysis.simulate import simulate_predictions
    >>> one = simulate_predictions(n_sites=3, subjects_per_site=6, n_seeds=1, n_folds=2, seed=1,
    ...                            models={"cnn": 1.5}).predictions
    >>> two = simulate_predictions(n_sites=3, subjects_per_site=6, n_seeds=1, n_folds=2, seed=2,
    ...                            models={"vit": 1.0}).predictions
    >>> two = two.with_columns(pl.col("sample_id") + "-b")  # other patients
    >>> out = compare_across(pl.concat([one, two]), "auc", n_boot=200)
    >>> out.select("model_a", "model_b", "pairing").row(0)
    ('cnn', 'vit', 'unpaired')
    """
    m = get_metric(metric)
    frame = _clean(to_polars(predictions, name="predictions"), perturbation)
    keys = as_names(by, name="by")
    lv, st = as_names(levels, name="levels"), as_names(strata, name="strata")
    methods = [method] if isinstance(method, str) else list(method)
    require_columns(frame, ["model", "outer_fold", "seed", "sample_id", *keys], name="predictions")
    rows: list[dict] = []
    groups = frame.sort(keys).group_by(keys, maintain_order=True) if keys else [((), frame)]
    for key, part in groups:
        info = dict(zip(keys, key, strict=True))
        setup = _Setup(m, lv, st, n_boot, seed, alpha, scheme, interval, str(info or "data"))
        group_rows = _group_pairs(part, setup, methods, n_boot, seed, alpha)
        n_seeds = part.get_column("seed").n_unique()
        for r in group_rows:
            r.update(info, metric=m.label(), correction=correction, n_seeds=n_seeds)
        _adjust(group_rows, correction, alpha)
        rows += group_rows
    return _table(rows, keys, frame)


def _group_pairs(
    part: pl.DataFrame, s: _Setup, methods: list[str], n_boot: int, seed: int, alpha: float
) -> list[dict]:
    sets = _test_sets(part)
    models = sorted(sets)
    design: dict[frozenset, list[str]] = {}
    for model in models:
        design.setdefault(sets[model][0], []).append(model)
    same: dict[tuple[str, str], list[dict]] = {}
    for members in design.values():
        if len(members) < 2:
            continue
        out = compare(
            part.filter(pl.col("model").is_in(members)), metric=s.metric, models=members,
            levels=s.levels, by=None, method=methods, correction="none", n_boot=n_boot,
            seed=seed, alpha=alpha, perturbation=None, scheme=s.scheme, interval=s.interval,
            strata=s.strata or None,
        )  # fmt: skip
        for r in out.iter_rows(named=True):
            same.setdefault((r["model_a"], r["model_b"]), []).append(r | {"pairing": PAIRINGS[0]})
    pairs = list(combinations(models, 2))
    unpaired = [(a, b) for a, b in pairs if _kind(sets[a], sets[b]) == PAIRINGS[2]]
    boot = _independent(part, sorted({x for p in unpaired for x in p}), s) if unpaired else {}
    rows = []
    for a, b in pairs:
        kind = _kind(sets[a], sets[b])
        if kind == PAIRINGS[0]:
            rows += same[(a, b)]
        elif kind == PAIRINGS[1]:
            rows.append(_shared_subjects(part, a, b, s) | {"n_splits": None})
        else:
            rows.append(_unpaired(boot, a, b, s) | {"n_splits": None})
    return rows


def _family(method: str) -> str:
    if "bootstrap" in method:
        return "bootstrap"
    return "permutation" if "permutation" in method else "t-test"


def _adjust(rows: list[dict], correction: str, alpha: float) -> None:
    """Adjusted p-values over the pairs of one group, per family of methods."""
    for fam in {_family(r["method"]) for r in rows}:
        members = [r for r in rows if _family(r["method"]) == fam]
        p = np.array([np.nan if r["p_value"] is None else r["p_value"] for r in members], float)
        adjusted = p.copy()
        ok = np.isfinite(p)
        if ok.sum() > 1 and correction != "none":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                adjusted[ok] = multipletests(p[ok], alpha=alpha, method=correction)[1]
        for r, pa in zip(members, adjusted, strict=True):
            r["p_adjusted"] = float(pa)


def _table(rows: list[dict], keys: list[str], frame: pl.DataFrame) -> pl.DataFrame:
    source = SOURCE_COLUMN in frame.columns
    where = {}
    if source:
        where = dict(frame.select("model", SOURCE_COLUMN).unique(subset="model").iter_rows())
    schema: dict[str, Any] = {k: frame.schema[k] for k in keys}
    schema |= {"model_a": pl.String, "model_b": pl.String}
    if source:
        schema |= {"source_a": pl.String, "source_b": pl.String}
    schema |= {
        "metric": pl.String, "estimate": pl.Float64, "se": pl.Float64, "ci_low": pl.Float64,
        "ci_high": pl.Float64, "p_value": pl.Float64, "p_adjusted": pl.Float64,
        "method": pl.String, "unit": pl.String, "pairing": pl.String, "correction": pl.String,
        "n_splits": pl.Int64, "n_seeds": pl.Int64, "n_resamples": pl.Int64,
    }  # fmt: skip
    out = []
    for r in rows:
        if source:
            r = r | {"source_a": where.get(r["model_a"]), "source_b": where.get(r["model_b"])}
        out.append({c: r.get(c) for c in schema})
    return pl.DataFrame(out, schema=schema)


def same_subjects(predictions: Any, by: Sequence[str] = ("dataset",)) -> bool:
    """True when, in every ``by`` group, all models were tested on the same sample ids."""
    frame = _clean(to_polars(predictions, name="predictions"), "none")
    keys = [c for c in by if c in frame.columns]
    groups = frame.group_by(keys) if keys else [((), frame)]
    return all(len({s[1] for s in _test_sets(part).values()}) <= 1 for _, part in groups)
