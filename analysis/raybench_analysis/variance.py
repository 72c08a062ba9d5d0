"""How much of a model's score spread comes from seeds, from splits and from the test sample.

``variance_components`` decomposes per-trial scores of one model (one row per outer split and seed)
into a *split* part (which subjects were trained on), a *seed* part (initialisation, data order,
augmentation: everything a new seed changes) and a *test-sample* part (which subjects happened to
be tested), after Bouthillier et al. (2021). ``sample_size`` turns those parts into the number of
splits, seeds and test subjects a study needs to detect a difference between two models.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import polars as pl
from scipy import stats

from ._frames import AnalysisError, as_names, require_columns, to_polars

__all__ = ["sample_size", "variance_components"]

_OUT_SCHEMA = {
    "component": pl.String,
    "variance": pl.Float64,
    "sd": pl.Float64,
    "share": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "method": pl.String,
    "ci_method": pl.String,
    "unit": pl.String,
    "n_splits": pl.Int64,
    "n_seeds": pl.Int64,
    "n_test": pl.Float64,
}


# --------------------------------------------------------------------------------------------
# one-way random-effects REML on sufficient statistics (vectorised over replicates)


def _oneway_reml(
    sizes: np.ndarray, means: np.ndarray, ssw: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """REML estimates of (between-group, within-group) variance for each row of ``means``.

    ``sizes`` (K,) are the group sizes, ``means`` (B, K) the group means and ``ssw`` (B,) the
    pooled within-group sums of squares of B data sets. The profiled REML criterion of
    ``y_kj = mu + a_k + e_kj`` in ``gamma = s2_a / s2_e`` is
    ``(N-1) log Q(gamma) + sum_k log(1 + gamma n_k) + log sum_k w_k`` with
    ``w_k = n_k/(1+gamma n_k)`` and ``Q = SSW + sum_k w_k (ybar_k - mu_hat)^2``; it is minimised
    over ``gamma >= 0`` by a grid on ``log gamma`` and golden-section refinement.
    """
    n = sizes.astype(float)
    total = n.sum()

    def crit(gamma: np.ndarray) -> np.ndarray:  # gamma (B, G) -> criterion (B, G)
        w = n[None, None, :] / (1.0 + gamma[..., None] * n[None, None, :])
        mu = (w * means[:, None, :]).sum(-1) / w.sum(-1)
        q = ssw[:, None] + (w * (means[:, None, :] - mu[..., None]) ** 2).sum(-1)
        q = np.maximum(q, 1e-300)
        return (
            (total - 1.0) * np.log(q)
            + np.log1p(gamma[..., None] * n[None, None, :]).sum(-1)
            + np.log(w.sum(-1))
        )

    b = means.shape[0]
    grid = np.concatenate([[0.0], np.exp(np.linspace(-14.0, 14.0, 113))])
    values = crit(np.broadcast_to(grid, (b, len(grid))))
    best = values.argmin(axis=1)
    lo = np.log(grid[np.maximum(best - 1, 1)])
    hi = np.log(grid[np.minimum(best + 1, len(grid) - 1)])
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    for _ in range(60):
        c = hi - ratio * (hi - lo)
        d = lo + ratio * (hi - lo)
        fc = crit(np.exp(c)[:, None])[:, 0]
        fd = crit(np.exp(d)[:, None])[:, 0]
        left = fc < fd
        hi = np.where(left, d, hi)
        lo = np.where(left, lo, c)
    gamma = np.exp((lo + hi) / 2.0)
    at_zero = crit(np.zeros((b, 1)))[:, 0] <= crit(gamma[:, None])[:, 0]
    gamma = np.where(at_zero, 0.0, gamma)
    w = n[None, :] / (1.0 + gamma[:, None] * n[None, :])
    mu = (w * means).sum(-1) / w.sum(-1)
    q = ssw + (w * (means - mu[:, None]) ** 2).sum(-1)
    s2_e = q / (total - 1.0)
    return gamma * s2_e, s2_e


def _oneway_anova(
    sizes: np.ndarray, means: np.ndarray, ssw: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Balanced one-way ANOVA (expected mean squares) estimates, the between part truncated at 0."""
    k, s = len(sizes), float(sizes[0])
    msa = s * ((means - means.mean(axis=1, keepdims=True)) ** 2).sum(axis=1) / (k - 1)
    mse = ssw / (k * (s - 1.0))
    return np.maximum((msa - mse) / s, 0.0), mse


# --------------------------------------------------------------------------------------------
# test-sample covariance from per-sample predictions


def _influence(pred: pl.DataFrame, metric: str, sample_value: str | None, trial: list[str]):
    """Per-row influence values ``phi`` whose sum over a resampled test set linearises the metric.

    mean/accuracy: ``phi_i = (v_i - vbar) / N``; auc: DeLong placement values,
    ``phi_i = (V10_i - AUC) / n_pos`` for positives and ``(V01_j - AUC) / n_neg`` for negatives.
    """
    if metric in ("mean", "accuracy"):
        v = (
            pl.col(sample_value)
            if metric == "mean"
            else ((pl.col("y_pred") == pl.col("y_true")).cast(pl.Float64))
        )
        return pred.with_columns(((v - v.mean().over(trial)) / pl.len().over(trial)).alias("_phi"))
    pos = pl.col("y_true") == 1
    n_pos = pos.sum().over(trial)
    n_neg = (~pos).sum().over(trial)
    r_all = pl.col("score").rank("average").over(trial)
    r_cls = pl.col("score").rank("average").over([*trial, "y_true"])
    v10 = (r_all - r_cls) / n_neg
    v01 = 1.0 - (r_all - r_cls) / n_pos
    placement = pl.when(pos).then(v10).otherwise(v01)
    auc = pl.when(pos).then(v10).otherwise(None).mean().over(trial)
    phi = pl.when(pos).then((placement - auc) / n_pos).otherwise((placement - auc) / n_neg)
    return pred.with_columns(phi.alias("_phi"))


def _test_covariance(
    pred: pl.DataFrame,
    split: str,
    seed: str,
    sample: str,
    metric: str,
    sample_value: str | None,
) -> pl.DataFrame:
    """Per split: mean between-seed covariance (shared) and mean variance of the metric over
    resamples of test subjects, by the influence-function (linearised bootstrap) formula."""
    trial = [split, seed]
    needed = {
        "mean": [sample_value or ""],
        "accuracy": ["y_true", "y_pred"],
        "auc": ["y_true", "score"],
    }[metric]
    require_columns(pred, [*trial, sample, *needed], name="predictions", why=f"for {metric=}")
    if metric == "auc":
        labels = set(pred["y_true"].drop_nulls().unique().to_list())
        if not labels <= {0, 1}:
            raise AnalysisError(
                f"predictions: metric='auc' needs binary y_true in {{0, 1}}, found {sorted(labels)}"
                "; use metric='mean' with a per-sample column for other tasks"
            )
    phi = _influence(pred, metric, sample_value, trial)
    clusters = phi.group_by([*trial, sample]).agg(pl.col("_phi").sum().alias("_cl"))
    n_clusters = clusters.group_by(trial).agg(pl.len().alias("_g"))
    pairs = clusters.join(clusters, on=[split, sample], suffix="_b").join(n_clusters, on=trial)
    per_pair = pairs.group_by([split, seed, f"{seed}_b"]).agg(
        (
            (pl.col("_cl") * pl.col("_cl_b")).sum()
            * pl.col("_g").first()
            / (pl.col("_g").first() - 1)
        ).alias("_cov")
    )
    same = pl.col(seed) == pl.col(f"{seed}_b")
    per_split = per_pair.group_by(split).agg(
        pl.col("_cov").filter(same).mean().alias("diag"),
        pl.col("_cov").filter(~same).mean().alias("off"),
    )
    sizes = n_clusters.group_by(split).agg(pl.col("_g").mean().alias("n_test"))
    return (
        per_split.join(sizes, on=split).with_columns(shared=pl.coalesce("off", "diag")).sort(split)
    )


# --------------------------------------------------------------------------------------------
# variance_components


def _t_interval(values: np.ndarray, alpha: float) -> tuple[float, float]:
    """Student t interval of the mean of per-split values, the lower end floored at 0."""
    k = len(values)
    if k < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(1 - alpha / 2, k - 1) * values.std(ddof=1) / np.sqrt(k)
    return max(float(values.mean() - half), 0.0), float(values.mean() + half)


def _chi2_intervals(
    sizes: np.ndarray, means: np.ndarray, ssw: float, alpha: float
) -> dict[str, tuple[float, float]]:
    """Closed-form intervals for the one-way random-effects variances.

    seed: ``SSW / sigma2_seed ~ chi2(N - K)`` exactly. split: the split-mean variance
    ``tau2 = sigma2_u + sigma2_seed / n_h`` is estimated by the unweighted-means mean square with
    ``K - 1`` df (exact when balanced), its chi-square interval shifted by ``MSE / n_h``
    (Williams 1962). total: Satterthwaite's (1946) approximate chi-square for
    ``MSA/n_h + (1 - 1/n_h) MSE``.
    """
    k, n = len(sizes), float(sizes.sum())
    lo_q, hi_q = alpha / 2, 1 - alpha / 2
    df_e, df_a = n - k, k - 1
    mse = ssw / df_e
    nh = k / float(np.sum(1.0 / sizes))
    tau = float(np.var(means, ddof=1))
    t_lo = df_a * tau / stats.chi2.ppf(hi_q, df_a)
    t_hi = df_a * tau / stats.chi2.ppf(lo_q, df_a)
    c1, c2 = 1.0, 1.0 - 1.0 / nh
    total = c1 * tau + c2 * mse
    spread = (c1 * tau) ** 2 / df_a + (c2 * mse) ** 2 / df_e
    if spread == 0:  # every score equal (e.g. accuracy of a tiny test set): the interval is {0}
        total_ci = (0.0, 0.0)
    else:
        nu = total**2 / spread
        total_ci = (nu * total / stats.chi2.ppf(hi_q, nu), nu * total / stats.chi2.ppf(lo_q, nu))
    return {
        "seed": (ssw / stats.chi2.ppf(hi_q, df_e), ssw / stats.chi2.ppf(lo_q, df_e)),
        "split": (max(t_lo - mse / nh, 0.0), max(t_hi - mse / nh, 0.0)),
        "total": total_ci,
    }


def _check_design(frame: pl.DataFrame, value: str, seed: str, split: str, where: str):
    dup = frame.group_by([split, seed]).len().filter(pl.col("len") > 1)
    if dup.height:
        row = dup.row(0, named=True)
        raise AnalysisError(
            f"scores{where}: {row['len']} rows for {split}={row[split]!r}, {seed}={row[seed]!r}; "
            "give one score per (split, seed) — filter one perturbation/dataset, or pass by=..."
        )
    nulls = frame[value].is_null() | frame[value].is_nan()
    if nulls.any():
        raise AnalysisError(
            f"scores{where}: column {value!r} is missing at row {int(nulls.arg_max())}; "
            "drop failed trials first"
        )
    counts = frame.group_by(split).len()
    if counts.height < 2:
        raise AnalysisError(
            f"scores{where}: only {counts.height} value(s) of {split!r}; the split variance "
            "needs at least 2 splits"
        )
    if int(counts["len"].max()) < 2:
        raise AnalysisError(
            f"scores{where}: one seed per split; seed and split variance cannot be separated. "
            "Run at least 2 seeds on some splits."
        )
    return counts


def variance_components(
    scores: Any,
    value: str = "score",
    seed: str = "seed",
    split: str = "outer_fold",
    *,
    predictions: Any = None,
    metric: Literal["accuracy", "auc", "mean"] = "accuracy",
    sample: str = "subject_id",
    sample_value: str | None = None,
    n_test: str | float | None = None,
    by: str | Sequence[str] | None = None,
    method: Literal["reml", "anova"] = "reml",
    ci: Literal["chi2", "bootstrap"] = "chi2",
    n_boot: int = 2000,
    alpha: float = 0.05,
    random_state: int = 0,
) -> pl.DataFrame:
    """Decompose the variance of a model's per-trial score into split, seed and test-sample parts.

    Parameters
    ----------
    scores : frame with one row per (split, seed) of one model: columns ``value``, ``seed``,
        ``split`` (and ``by`` columns to do several models or datasets at once).
    value, seed, split : column names of the score, the seed and the outer split.
    predictions : optional per-sample predictions of the same trials (columns ``split``, ``seed``,
        ``sample`` and those of ``metric``): gives the test-sample part by resampling test subjects.
    metric : ``"accuracy"`` (``y_true``, ``y_pred``), ``"auc"`` (binary ``y_true``, ``score``) or
        ``"mean"`` (the mean of the per-sample column ``sample_value``: dice, loss, squared error).
    sample : resampling unit of the test set (subjects: images of one subject move together).
    n_test : without predictions, a column or number of test subjects per trial; the test-sample
        part is then the binomial variance ``p (1 - p) / n_test`` (proportions only).
    by : columns to decompose separately (e.g. ``["dataset", "model"]``).
    method : ``"reml"`` (default; one-way random-effects REML, any numbers of seeds per split) or
        ``"anova"`` (expected mean squares, balanced designs only; negative values set to 0).
    ci : ``"chi2"`` (default; closed-form chi-square intervals, see Notes) or ``"bootstrap"``
        (parametric bootstrap percentile; too narrow with fewer than ~20 splits).
    n_boot, alpha, random_state : parametric bootstrap replicates (``ci="bootstrap"``), interval
        level and random seed.

    Returns
    -------
    polars DataFrame, rows ``split``, ``seed``, ``test_sample`` (when predictions or n_test are
    given) and ``total`` (per ``by`` group), columns: ``by`` columns, component, variance, sd,
    share (variance / total), ci_low, ci_high (interval of the variance), method, ci_method, unit,
    n_splits, n_seeds, n_test.

    Notes
    -----
    Model: ``score_ks = mu + u_k + e_ks`` with split effects ``u_k ~ N(0, s2_u)`` and seed effects
    ``e_ks ~ N(0, s2_seed)``, fitted by REML (for balanced designs this equals the ANOVA
    estimators ``s2_u = (MSA - MSE)/S``, ``s2_seed = MSE`` when positive). Each trial's score is
    measured on a finite test set; the variance of the metric over resamples of test subjects is
    linearised with influence values ``phi_i`` (means: ``(v_i - vbar)/N``; AUC: DeLong placement
    values), summed per subject, ``C_ss' = G/(G-1) sum_c Phi_cs Phi_cs'`` for two seeds of a split.
    Its between-seed part (mean off-diagonal of ``C``: the same test subjects are shared by every
    seed of a split) is inside ``s2_u``; the rows report ``split = max(s2_u - test_sample, 0)``
    (training-set sampling), ``seed = s2_seed``, ``test_sample = mean_k C_off`` and
    ``total = s2_u + s2_seed``, the variance of one trial's score. With one seed per split the
    diagonal is used. Intervals (``ci="chi2"``, of the variance): seed, exact chi-square
    ``SSW / chi2_{N-K}``; split, the chi-square interval (``K - 1`` df) of the split-mean variance
    ``sigma2_u + sigma2_seed / n_h`` (unweighted means; exact when balanced) minus ``MSE / n_h``
    and the test-sample part; total, Satterthwaite's approximate chi-square for
    ``MSA/n_h + (1 - 1/n_h) MSE``; test_sample, a t interval over splits of the per-split values.
    ``ci="bootstrap"``: parametric bootstrap (data simulated from the fit through their sufficient
    statistics, refitted), percentile.

    References
    ----------
    Bouthillier, X., Delaunay, P., Bronzi, M., Trofimov, A., Nichyporuk, B., Szeto, J., Sepah, N.,
    Raff, E., Madan, K., Voleti, V., Kahou, S. E., Michalski, V., Arbel, T., Pal, C., Varoquaux, G.
    & Vincent, P. (2021). Accounting for variance in machine learning benchmarks. *Proceedings of
    Machine Learning and Systems*, 3, 747–769.
    Searle, S. R., Casella, G. & McCulloch, C. E. (1992). *Variance Components*. Wiley (ch. 3–4).
    DeLong, E. R., DeLong, D. M. & Clarke-Pearson, D. L. (1988). Comparing the areas under two or
    more correlated receiver operating characteristic curves: a nonparametric approach.
    *Biometrics*, 44(3), 837–845.
    Davison, A. C. & Hinkley, D. V. (1997). *Bootstrap Methods and their Application*. Cambridge
    University Press (§2.7, linear approximation of the bootstrap variance).
    Burdick, R. K. & Graybill, F. A. (1992). *Confidence Intervals on Variance Components*.
    Marcel Dekker.
    Satterthwaite, F. E. (1946). An approximate distribution of estimates of variance components.
    *Biometrics Bulletin*, 2(6), 110–114.

    Examples
    --------
    >>> import numpy as np, polars as pl
    >>> rng = np.random.default_rng(0)
    >>> split = np.repeat(np.arange(10), 4)
    >>> score = 0.8 + rng.normal(0, 0.03, 10)[split] + rng.normal(0, 0.01, 40)
    >>> vc = variance_components(pl.DataFrame({"score": score, "outer_fold": split,
    ...                                        "seed": np.tile(np.arange(4), 10)}), n_boot=200)
    >>> vc["component"].to_list()
    ['split', 'seed', 'total']
    >>> bool(vc.filter(pl.col("component") == "split")["share"][0] > 0.5)
    True
    """
    if method not in ("reml", "anova"):
        raise AnalysisError(f"variance_components: method={method!r}; use 'reml' or 'anova'")
    if metric not in ("accuracy", "auc", "mean"):
        raise AnalysisError(
            f"variance_components: metric={metric!r}; use 'accuracy', 'auc' or 'mean' "
            "(with sample_value=<per-sample column>)"
        )
    if metric == "mean" and predictions is not None and not sample_value:
        raise AnalysisError("variance_components: metric='mean' needs sample_value=<column>")
    if not 0.0 < alpha < 1.0:
        raise AnalysisError(f"variance_components: alpha={alpha} must be in (0, 1)")
    if ci not in ("chi2", "bootstrap"):
        raise AnalysisError(f"variance_components: ci={ci!r}; use 'chi2' or 'bootstrap'")
    if n_boot < 10:
        raise AnalysisError(f"variance_components: n_boot={n_boot}; use at least 10 (e.g. 2000)")
    frame = to_polars(scores, name="scores")
    by_cols = as_names(by, name="by")
    need = [value, seed, split, *by_cols]
    if isinstance(n_test, str):
        need.append(n_test)
    require_columns(frame, need, name="scores", why="for variance_components")
    pred = to_polars(predictions, name="predictions") if predictions is not None else None
    rng = np.random.default_rng(random_state)
    groups = (
        frame.partition_by(by_cols, as_dict=True, maintain_order=True) if by_cols else {(): frame}
    )
    outputs = []
    for key, sub in groups.items():
        where = "".join(f", {c}={k!r}" for c, k in zip(by_cols, key, strict=True))
        sub_pred = pred
        if pred is not None and by_cols:
            require_columns(pred, by_cols, name="predictions", why="to match scores by group")
            sub_pred = pred.filter(
                pl.all_horizontal([pl.col(c) == k for c, k in zip(by_cols, key, strict=True)])
            )
        table = _decompose(
            sub,
            value,
            seed,
            split,
            sub_pred,
            metric,
            sample,
            sample_value,
            n_test,
            method,
            ci,
            n_boot,
            alpha,
            rng,
            where,
        )
        for c, k in reversed(list(zip(by_cols, key, strict=True))):
            table = table.insert_column(0, pl.Series(c, [k] * table.height))
        outputs.append(table)
    return pl.concat(outputs, how="vertical")


def _decompose(
    sub,
    value,
    seed,
    split,
    pred,
    metric,
    sample,
    sample_value,
    n_test,
    method,
    ci_kind,
    n_boot,
    alpha,
    rng,
    where,
) -> pl.DataFrame:
    counts = _check_design(sub, value, seed, split, where)
    stats_k = (
        sub.group_by(split)
        .agg(
            pl.len().alias("n"),
            pl.col(value).mean().alias("mean"),
            ((pl.col(value) - pl.col(value).mean()) ** 2).sum().alias("ss"),
        )
        .sort(split)
    )
    sizes = stats_k["n"].to_numpy().astype(float)
    means = stats_k["mean"].to_numpy()
    ssw = float(stats_k["ss"].sum())
    balanced = bool(np.all(sizes == sizes[0]))
    if method == "anova" and not balanced:
        raise AnalysisError(
            f"scores{where}: method='anova' needs the same number of seeds on every split "
            f"(found {sorted(set(sizes.astype(int).tolist()))}); use method='reml'"
        )
    fit = _oneway_reml if method == "reml" else _oneway_anova
    s2_u, s2_e = (float(v[0]) for v in fit(sizes, means[None, :], np.array([ssw])))
    n_splits, n_seeds = len(sizes), int(counts["len"].max())
    total_n = sizes.sum()

    if ci_kind == "bootstrap":  # parametric bootstrap through the sufficient statistics
        mu = float(np.sum(sizes * means) / total_n)
        u = rng.normal(0.0, np.sqrt(s2_u), (n_boot, n_splits))
        ebar = rng.normal(0.0, 1.0, (n_boot, n_splits)) * np.sqrt(s2_e / sizes)
        ssw_b = s2_e * rng.chisquare(total_n - n_splits, n_boot)
        b_u, b_e = fit(sizes, mu + u + ebar, ssw_b)

    test_shared, test_ci, test_n = None, (np.nan, np.nan), None
    test_note = ""
    if pred is not None:
        cov = _test_covariance(pred, split, seed, sample, metric, sample_value)
        missing = set(stats_k[split].to_list()) - set(cov[split].to_list())
        if missing:
            raise AnalysisError(
                f"predictions{where}: no predictions for {split} in {sorted(missing)}; pass the "
                "predictions of the same trials as scores"
            )
        cov = cov.filter(pl.col(split).is_in(stats_k[split].implode()))
        shared_k = cov["shared"].to_numpy()
        test_shared = float(shared_k.mean())
        test_ci = _t_interval(shared_k, alpha)
        test_n = float(cov["n_test"].mean())
        test_note = f" + test-sample covariance by influence values ({metric}, unit {sample})"
    elif n_test is not None:
        sizes_t = (
            sub[n_test].to_numpy().astype(float)
            if isinstance(n_test, str)
            else np.full(sub.height, float(n_test))
        )
        p = sub[value].to_numpy()
        if np.any((p < 0) | (p > 1)) or np.any(sizes_t < 2):
            raise AnalysisError(
                f"scores{where}: binomial test-sample variance needs proportions in [0, 1] and "
                "n_test >= 2; pass predictions=... for other metrics"
            )
        per = p * (1 - p) / sizes_t
        test_shared = float(per.mean())
        per_split = (
            sub.select(pl.col(split), pl.Series("_v", per)).group_by(split).agg(pl.col("_v").mean())
        )
        test_ci = _t_interval(per_split["_v"].to_numpy(), alpha)
        test_n = float(sizes_t.mean())
        test_note = " + binomial test-sample variance p(1-p)/n_test"

    def ci(x: np.ndarray) -> tuple[float, float]:
        lo, hi = np.quantile(x, [alpha / 2, 1 - alpha / 2])
        return float(lo), float(hi)

    est = "REML" if method == "reml" else "ANOVA (expected mean squares)"
    meth = f"{est} one-way random effects, seed within split{test_note}"
    total = s2_u + s2_e
    rows = []
    shift = 0.0 if test_shared is None else test_shared
    split_var = max(s2_u - shift, 0.0)
    if ci_kind == "bootstrap":
        ci_meth = f"parametric bootstrap percentile, n_boot={n_boot}"
        split_ci = ci(np.maximum(b_u - shift, 0.0))
        seed_ci, total_ci = ci(b_e), ci(b_u + b_e)
        ci_methods = (ci_meth, ci_meth, ci_meth)
    else:
        chi = _chi2_intervals(sizes, means, ssw, alpha)
        split_ci = (max(chi["split"][0] - shift, 0.0), max(chi["split"][1] - shift, 0.0))
        seed_ci, total_ci = chi["seed"], chi["total"]
        ci_methods = (
            "chi-square on the split-mean variance, shifted by MSE/n",
            "exact chi-square on the within-split sum of squares",
            "Satterthwaite chi-square on MSA/n + (1 - 1/n) MSE",
        )
    rows.append(("split", split_var, split_ci, ci_methods[0], split))
    rows.append(("seed", s2_e, seed_ci, ci_methods[1], f"{split}>{seed}"))
    if test_shared is not None:
        rows.append(
            (
                "test_sample",
                test_shared,
                (float(test_ci[0]), float(test_ci[1])),
                "t interval over splits of the per-split test-sample variances",
                sample if pred is not None else "sample (binomial)",
            )
        )
    rows.append(("total", total, total_ci, ci_methods[2], f"{split}>{seed}"))
    return pl.DataFrame(
        [
            {
                "component": name,
                "variance": var,
                "sd": float(np.sqrt(max(var, 0.0))),
                "share": var / total if total > 0 else float("nan"),
                "ci_low": lo_hi[0],
                "ci_high": lo_hi[1],
                "method": meth,
                "ci_method": cim,
                "unit": unit,
                "n_splits": n_splits,
                "n_seeds": n_seeds,
                "n_test": test_n,
            }
            for name, var, lo_hi, cim, unit in rows
        ],
        schema=_OUT_SCHEMA,
    )


# --------------------------------------------------------------------------------------------
# sample_size


def _components_dict(
    components: Any, n_test: float | None, bound: str
) -> tuple[dict[str, float], float | None]:
    if isinstance(components, Mapping):
        if bound != "estimate":
            raise AnalysisError(
                f"sample_size: bound={bound!r} needs the output of variance_components (with "
                "ci_high); a dict gives point values only"
            )
        comp = {str(k): float(v) for k, v in components.items()}
        return comp, n_test
    frame = to_polars(components, name="components")
    require_columns(frame, ["component", "variance"], name="components")
    if frame["component"].n_unique() != frame.height:
        raise AnalysisError(
            "components: several rows per component (a by= grouping?); pass the rows of one "
            "model, e.g. vc.filter(pl.col('model') == 'resnet')"
        )
    column = "variance" if bound == "estimate" else "ci_high"
    require_columns(frame, [column], name="components", why=f"for {bound=}")
    comp = dict(zip(frame["component"].to_list(), frame[column].to_list(), strict=True))
    if n_test is None and "n_test" in frame.columns:
        vals = frame["n_test"].drop_nulls()
        n_test = float(vals[0]) if len(vals) else None
    return comp, n_test


def sample_size(
    components: Any,
    delta: float,
    alpha: float = 0.05,
    power: float = 0.8,
    *,
    n_splits: Sequence[int] = tuple(range(2, 31)),
    n_seeds: Sequence[int] = tuple(range(1, 11)),
    n_test: Sequence[float] | None = None,
    components_of: Literal["model", "difference"] = "model",
    rho: float = 0.0,
    n_train: float | None = None,
    pilot_n_test: float | None = None,
    bound: Literal["estimate", "upper"] = "estimate",
    cost_trial: float = 1.0,
    cost_subject: float = 0.0,
) -> pl.DataFrame:
    """Power of candidate designs (splits x seeds x test subjects) to detect a difference ``delta``.

    Parameters
    ----------
    components : output of :func:`variance_components` for one model (or one difference), or a
        mapping with keys ``split``, ``seed`` and optionally ``test_sample``.
    delta : the true difference in mean score between two models that the study must detect.
    alpha : two-sided significance level; power : target power.
    n_splits, n_seeds : candidate numbers of outer splits and of seeds per split.
    n_test : candidate numbers of test subjects per split (default: the pilot's).
    components_of : ``"model"`` when the components are those of one model's score (the
        difference of two models then has ``2 (1 - rho)`` times each variance), ``"difference"``
        when they were estimated on per-trial differences of the two models (paired; preferred).
    rho : correlation between the two models' effects on the same split/seed/test subjects
        (``components_of="model"`` only; 0 is conservative for positively correlated models).
    n_train : training-set size; if given, the split variance is inflated by Nadeau & Bengio's
        ``1/K + n_test/n_train`` instead of ``1/K`` for overlapping training sets.
    pilot_n_test : test subjects per split at which ``test_sample`` was estimated (read from
        ``components`` when it comes from :func:`variance_components`).
    bound : ``"estimate"`` plans with the point estimates; ``"upper"`` with the upper interval
        bounds (``ci_high``) of each component, a conservative plan when the pilot is small.
    cost_trial, cost_subject : cost of one trained model and of one tested subject.

    Returns
    -------
    polars DataFrame, one row per design sorted by cost: n_splits, n_seeds, n_test, se (SD of the
    study's mean difference), df, noncentrality, power, cost, meets_target, recommended (the
    cheapest design meeting the target; ties go to higher power), delta, alpha, target_power,
    method.

    Notes
    -----
    The study's estimate is the mean over K splits and S seeds of per-trial differences. Under
    ``score_ks = mu + u_k + e_ks`` its variance is
    ``c [(s2_split + s2_test n0/n) f_K + s2_seed/(K S)]`` with ``c = 2 (1 - rho)`` (or 1 for
    components of the difference), ``f_K = 1/K`` (or ``1/K + n/n_train``), ``n0`` the pilot's test
    subjects per split. Its natural estimate is the between-split mean square, with ``K - 1`` df, so
    the test is a one-sample t-test on split means and the power is that of the noncentral t:
    ``P(|T| > t_{1-alpha/2, K-1})`` with ``T ~ t'(K - 1, delta / se)`` (Cohen 1988, ch. 2).
    More splits reduce every term; more seeds only the seed term; more test subjects only the
    test-sample term — the reason Bouthillier et al. (2021) recommend randomising splits over
    adding seeds.

    References
    ----------
    Bouthillier, X. et al. (2021). Accounting for variance in machine learning benchmarks.
    *Proceedings of Machine Learning and Systems*, 3, 747–769.
    Cohen, J. (1988). *Statistical Power Analysis for the Behavioral Sciences* (2nd ed.).
    Lawrence Erlbaum.
    Nadeau, C. & Bengio, Y. (2003). Inference for the generalization error. *Machine Learning*,
    52(3), 239–281.

    Examples
    --------
    >>> plan = sample_size({"split": 4e-4, "seed": 1e-4}, delta=0.02, n_seeds=[1, 2, 3])
    >>> best = plan.filter(pl.col("recommended")).row(0, named=True)
    >>> best["n_splits"], best["n_seeds"], best["power"] >= 0.8
    (22, 1, True)
    """
    if bound not in ("estimate", "upper"):
        raise AnalysisError(f"sample_size: bound={bound!r}; use 'estimate' or 'upper'")
    comp, n0 = _components_dict(components, pilot_n_test, bound)
    for key in ("split", "seed"):
        if key not in comp:
            raise AnalysisError(
                f"components: no {key!r} component (found {sorted(comp)}); pass the output of "
                "variance_components or a dict with 'split' and 'seed'"
            )
    s2_split, s2_seed = max(comp["split"], 0.0), max(comp["seed"], 0.0)
    s2_test = max(comp.get("test_sample", 0.0) or 0.0, 0.0)
    if s2_test > 0 and n0 is None:
        raise AnalysisError(
            "sample_size: a test_sample component needs the pilot's test subjects per split; "
            "pass pilot_n_test=..."
        )
    if not delta or not np.isfinite(delta):
        raise AnalysisError(f"sample_size: delta={delta!r}; give a non-zero difference to detect")
    if not (0 < alpha < 1 and 0 < power < 1):
        raise AnalysisError(f"sample_size: alpha={alpha}, power={power} must be in (0, 1)")
    if components_of not in ("model", "difference"):
        raise AnalysisError(f"sample_size: components_of={components_of!r}; 'model'|'difference'")
    if not -1.0 <= rho < 1.0:
        raise AnalysisError(f"sample_size: rho={rho} must be in [-1, 1)")
    if min(n_splits) < 2 or min(n_seeds) < 1:
        raise AnalysisError("sample_size: n_splits must be >= 2 and n_seeds >= 1")
    tests: list[float | None] = [float(v) for v in n_test] if n_test is not None else [n0]
    if n_train is not None and any(n is None for n in tests):
        raise AnalysisError("sample_size: n_train=... needs n_test (test subjects per split)")
    c = 1.0 if components_of == "difference" else 2.0 * (1.0 - rho)
    rows = []
    for k, s, n in itertools.product(n_splits, n_seeds, tests):
        test_term = s2_test * n0 / n if (s2_test > 0 and n0 and n) else 0.0
        f_k = 1.0 / k + (n / n_train if (n_train and n) else 0.0)
        var = c * ((s2_split + test_term) * f_k + s2_seed / (k * s))
        se = float(np.sqrt(var))
        df = k - 1
        lam = abs(delta) / se if se > 0 else np.inf
        crit = stats.t.ppf(1 - alpha / 2, df)
        pw = float(stats.nct.sf(crit, df, lam) + stats.nct.cdf(-crit, df, lam))
        cost = k * s * cost_trial + (k * n * cost_subject if n else 0.0)
        rows.append((k, s, n, se, float(df), float(lam), pw, float(cost)))
    out = pl.DataFrame(
        rows,
        schema={
            "n_splits": pl.Int64,
            "n_seeds": pl.Int64,
            "n_test": pl.Float64,
            "se": pl.Float64,
            "df": pl.Float64,
            "noncentrality": pl.Float64,
            "power": pl.Float64,
            "cost": pl.Float64,
        },
        orient="row",
    ).with_columns(meets_target=pl.col("power") >= power)
    out = out.sort(["cost", "power"], descending=[False, True])
    first = out.with_row_index("_i").filter(pl.col("meets_target"))["_i"]
    best = int(first[0]) if len(first) else -1
    method = (
        "noncentral t on split means, df = n_splits - 1; variance of the mean difference from "
        f"components of the {components_of}"
        + (f" (x 2(1-rho), rho={rho})" if components_of == "model" else "")
        + ("; Nadeau-Bengio overlap correction" if n_train else "")
        + ("; upper interval bounds of the components" if bound == "upper" else "")
    )
    return out.with_columns(
        recommended=pl.int_range(pl.len()) == best,
        delta=pl.lit(float(delta)),
        alpha=pl.lit(float(alpha)),
        target_power=pl.lit(float(power)),
        method=pl.lit(method),
    )
