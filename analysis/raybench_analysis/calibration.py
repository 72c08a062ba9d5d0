"""Calibration of predicted probabilities: ECE (two conventions), Brier score and its Murphy
decomposition, logistic recalibration slope and intercept, reliability diagrams, and temperature
scaling, each per model (and per site) with hierarchical bootstrap intervals.

A probability is calibrated when, among the cases given probability p, a share p is positive.
Every quantity here is a function of (probability, outcome) pairs of the test predictions; its
interval resamples the hierarchy (patients, or sites then patients) with
:func:`raybench_analysis.bootstrap`, per trained model (fold × seed cells averaged) by default,
like every other table of the package.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import polars as pl
import statsmodels.api as sm
from scipy import optimize, special

from raybench_analysis._frames import AnalysisError, require_columns, to_polars
from raybench_analysis._uncertainty import (
    TRIAL_COLUMNS,
    class_labels,
    default_average_over,
    group_keys,
    probability_matrix,
    quantity_rows,
    select_split,
)
from raybench_analysis.bootstrap import Interval, Scheme
from raybench_analysis.metrics import (
    Convention,
    Metric,
    _bin_index,
    _confidence,
    _ece_stats,
    _ratio,
    calibration_bins,
    get_metric,
)

__all__ = [
    "apply_temperature",
    "calibration",
    "calibration_slope",
    "fit_temperature",
    "reliability_diagram",
    "variants_as_models",
]

#: probabilities are clipped to [EPS, 1 − EPS] before taking logits (saturated float32 outputs)
EPS = 1e-6
_QUANTITIES = (
    "ece", "ece_l2", "brier", "reliability", "resolution", "uncertainty", "within_bin",
    "slope", "intercept",
)  # fmt: skip


# ----------------------------------------------------------------------------- sums metrics


def _ece_l2_metric(n_bins: int, convention: Convention) -> Metric:
    """Debiased squared binned calibration error from the ECE bin sums (0/1 outcomes).

    Σ_b (n_b/n)[(ȳ_b − p̄_b)² − ȳ_b(1 − ȳ_b)/(n_b − 1)]; bins with n_b ≤ 1 add 0 (no variance
    estimate). Given the probabilities the outcomes are independent Bernoulli, so the subtracted
    term is the unbiased estimate of Var(ȳ_b) and the sum is unbiased for Σ_b (n_b/n)(μ_b − p̄_b)².
    """

    def finalize(s: np.ndarray) -> np.ndarray:
        b = s.shape[-1] // 3
        n, conf, hit = s[..., :b], s[..., b : 2 * b], s[..., 2 * b :]
        ok = n > 1
        m = np.where(ok, n, 2.0)
        ybar = hit / m
        term = np.where(ok, n * ((hit - conf) / m) ** 2 - n * ybar * (1 - ybar) / (m - 1), 0.0)
        return _ratio(term.sum(axis=-1), n.sum(axis=-1))

    stats = _ece_stats(n_bins, convention)
    return Metric("ece_l2_squared_debiased", ("y_true",), "sums", stats, finalize, False,
                  {"n_bins": n_bins, "convention": convention})  # fmt: skip


def _murphy_metric(part: str, n_bins: int) -> Metric:
    """One term of the binned Brier decomposition of the positive-class probability."""

    def stats(frame: pl.DataFrame) -> np.ndarray:
        p, y = _confidence(frame, "positive_class")
        onehot = np.zeros((len(p), n_bins))
        onehot[np.arange(len(p)), _bin_index(p, n_bins)] = 1.0
        cols = (np.ones_like(p), p, y, p * p, p * y)
        return np.hstack([onehot * c[:, None] for c in cols])

    def finalize(s: np.ndarray) -> np.ndarray:
        n_b, sp, sy, spp, spy = (s[..., i * n_bins : (i + 1) * n_bins] for i in range(5))
        n = n_b.sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            pbar = np.where(n_b > 0, sp / np.where(n_b > 0, n_b, 1), 0.0)
            ybar_b = np.where(n_b > 0, sy / np.where(n_b > 0, n_b, 1), 0.0)
            ybar = sy.sum(axis=-1) / n
            if part == "reliability":
                value = (n_b * (pbar - ybar_b) ** 2).sum(axis=-1) / n
            elif part == "resolution":
                value = (n_b * (ybar_b - ybar[..., None]) ** 2).sum(axis=-1) / n
            elif part == "uncertainty":
                value = ybar * (1 - ybar)
            else:  # within-bin variance minus twice the within-bin covariance
                wbv = (spp - n_b * pbar**2).sum(axis=-1) / n
                wbc = (spy - n_b * pbar * ybar_b).sum(axis=-1) / n
                value = wbv - 2 * wbc
        return np.where(n > 0, value, np.nan)

    return Metric(part, ("y_true",), "sums", stats, finalize, False, {"n_bins": n_bins})


def _logits(p: np.ndarray) -> np.ndarray:
    return special.logit(np.clip(p, EPS, 1 - EPS))


def calibration_slope(y_true: Any, score: Any) -> dict[str, float]:
    """Calibration slope and intercept of binary probabilities by logistic recalibration.

    Parameters
    ----------
    y_true : array-like of 0/1
    score : array-like of probabilities of class 1 (clipped to [1e-6, 1 − 1e-6])

    Returns
    -------
    dict
        ``slope`` and ``slope_intercept`` of logit P(y=1) = a + b·logit(p) (statsmodels
        ``Logit``), ``intercept`` (calibration-in-the-large) of logit P(y=1) = a + logit(p),
        the slope fixed at 1 (statsmodels ``GLM``, binomial, offset logit(p)). NaN when a fit
        fails (one class, separation).

    Notes
    -----
    Cox (1958) recalibration; the calibration intercept with the slope fixed at 1 and the slope
    are the "weak calibration" measures of Van Calster et al. (2019): slope < 1 means too extreme
    probabilities (overfitting), intercept < 0 too high probabilities on average.

    References
    ----------
    Cox, D. R. (1958). Two further applications of a model for binary regression. Biometrika
        45(3–4), 562–565.
    Van Calster, B., McLernon, D. J., van Smeden, M., Wynants, L. & Steyerberg, E. W. (2019).
        Calibration: the Achilles heel of predictive analytics. BMC Medicine 17, 230.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(0, 2, 4000)
    >>> y = (rng.random(4000) < special.expit(z)).astype(float)
    >>> fit = calibration_slope(y, special.expit(2 * z))  # twice too extreme
    >>> round(fit["slope"], 1)
    0.5
    """
    y = np.asarray(y_true, dtype=float)
    lp = _logits(np.asarray(score, dtype=float))
    nan = {"slope": math.nan, "slope_intercept": math.nan, "intercept": math.nan}
    if len(y) < 3 or np.all(y == y[0]):
        return nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit = sm.Logit(y, np.column_stack([np.ones_like(lp), lp])).fit(disp=0, maxiter=100)
            glm = sm.GLM(y, np.ones_like(lp), family=sm.families.Binomial(), offset=lp).fit()
        except (
            np.linalg.LinAlgError,
            ValueError,
            RuntimeError,
            sm.tools.sm_exceptions.PerfectSeparationError,
        ):
            return nan
    b0, b1 = (float(v) for v in fit.params)
    return {"slope": b1, "slope_intercept": b0, "intercept": float(glm.params[0])}


def _recalibration_metric(part: Literal["slope", "intercept"]) -> Metric:
    """Slope or intercept as a sums metric: the MLE on the data, one Newton step per replicate.

    ``stats`` fits the model on the rows it is given (one cell, or the pooled group) and returns
    per-row [1, β̂ terms, Fisher information terms, score terms]; under weights w the replicate
    is β̂ + I_w⁻¹ U_w, the one-step bootstrap of Moulton & Zeger (1991). With all weights 1 the
    score U is 0 at the MLE and the estimate is the MLE itself.
    """

    def stats(frame: pl.DataFrame) -> np.ndarray:
        p, y = _confidence(frame, "positive_class")
        lp = _logits(p)
        fit = calibration_slope(y, p)
        one = np.ones_like(lp)
        if part == "slope":
            b0, b1 = fit["slope_intercept"], fit["slope"]
            mu = special.expit(b0 + b1 * lp)
            w, r = mu * (1 - mu), y - mu
            return np.column_stack([one, b0 * one, b1 * one, w, w * lp, w * lp * lp, r, r * lp])
        a = fit["intercept"]
        mu = special.expit(a + lp)
        return np.column_stack([one, a * one, mu * (1 - mu), y - mu])

    def finalize(s: np.ndarray) -> np.ndarray:
        n = s[..., 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            if part == "intercept":
                return s[..., 1] / n + s[..., 3] / s[..., 2]
            i00, i01, i11, u0, u1 = (s[..., k] for k in range(3, 8))
            det = i00 * i11 - i01 * i01
            return s[..., 2] / n + (i00 * u1 - i01 * u0) / det

    return Metric(part, ("y_true",), "sums", stats, finalize, True, {"eps": EPS})


# ----------------------------------------------------------------------------- public API


def calibration(
    predictions: Any,
    *,
    by: str | Sequence[str] | None = None,
    n_bins: int = 10,
    levels: Sequence[str] = ("subject_id",),
    split: str | None = "test",
    average_over: str | Sequence[str] | None = "trial",
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    scheme: Scheme = "cluster",
    interval: Interval = "t",
    strata: str | Sequence[str] | None = None,
    quantities: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Calibration quantities with hierarchical bootstrap intervals, per model (and ``by``).

    Parameters
    ----------
    predictions : polars/pandas DataFrame
        ``y_true`` and ``score`` (binary) or ``probs`` (multi-class; then only the top-label ECE
        and the Brier score), with the hierarchy columns of ``levels``; ``dataset``, ``model``,
        ``variant``, ``perturbation`` are kept apart when present.
    by : column name(s), optional
        Extra grouping, e.g. ``"site"`` for per-site calibration.
    n_bins : int
        Equal-width bins (lo, hi] of ECE and of the Brier decomposition.
    levels, n_boot, seed, alpha, scheme, interval, strata
        As in :func:`raybench_analysis.bootstrap`.
    split : str or None
        Rows of this ``split`` (default ``"test"``).
    average_over : column name(s), ``"trial"`` or None
        ``"trial"`` (default): ``("outer_fold", "seed")`` when present: each quantity per trained
        model, seeds then folds averaged (the estimand of :func:`raybench_analysis.summarize`);
        ``None``: one value over all rows of the group.
    quantities : sequence of str, optional
        A subset of the quantities below (default: all that apply; multi-class predictions
        have ``ece`` (top-label), ``ece_l2`` (top-label) and ``brier`` only).

    Returns
    -------
    polars.DataFrame
        One row per group and quantity: the group columns, ``quantity`` (``ece``, ``ece_l2``,
        ``brier``, ``reliability``, ``resolution``, ``uncertainty``, ``within_bin``, ``slope``,
        ``intercept``), ``convention`` (``top_label`` / ``positive_class`` for the ECE rows, null
        otherwise), ``estimate``, ``se``, ``ci_low``, ``ci_high``, ``df``, ``n_obs``,
        ``n_boot``, ``method``, ``unit``, ``n_<level>`` (and ``n_<column>`` of
        ``average_over``).

    Notes
    -----
    With bins b holding n_b of n cases, mean probability p̄_b, mean outcome ȳ_b and ȳ overall:

    - ``ece`` = Σ_b (n_b/n)|ȳ_b − p̄_b| (Naeini et al. 2015; Guo et al. 2017). ``top_label``:
      p = max class probability, outcome = correct; ``positive_class``: p = P(y = 1),
      outcome = y. The plug-in ECE is biased upward (|noise| > 0): its interval covers the
      expected ECE at this sample size, not 0, even for a calibrated model.
    - ``ece_l2`` = √max(0, D), D = Σ_b (n_b/n)[(ȳ_b − p̄_b)² − ȳ_b(1 − ȳ_b)/(n_b − 1)], the
      debiased ℓ2 calibration error (Bröcker 2012; Ferro & Fricker 2012; Kumar et al. 2019): D
      is unbiased for the squared binned calibration error, because given the probabilities the
      outcomes are independent Bernoulli. Interval: the bootstrap interval of D, clipped at 0,
      then rooted. It is conservative at 0 (it reached 0 in 99.5–100% of calibrated runs of
      analysis/validation/uncertainty.py) and has little power with ~120 cases per trial (it
      detected a temperature of 2 in 4.5% of runs where the slope interval did in 100%): use the
      slope to detect miscalibration, ``ece_l2`` to bound its size.
    - ``brier`` = (1/n) Σ_i (p_i − y_i)² (Σ over classes for multi-class; Brier 1950).
    - Murphy (1973): reliability = Σ_b (n_b/n)(p̄_b − ȳ_b)², resolution = Σ_b (n_b/n)(ȳ_b −
      ȳ)², uncertainty = ȳ(1 − ȳ); with within_bin = (1/n)Σ_i (p_i − p̄_b)² − (2/n)Σ_i (p_i −
      p̄_b)(y_i − ȳ_b) (Stephenson et al. 2008), brier = reliability − resolution +
      uncertainty + within_bin exactly (per cell, hence also for the averages over cells);
      within_bin is 0 when the probabilities are constant within bins.
    - ``slope`` b of logit P(y=1) = a + b·logit(p), ``intercept`` a of logit P(y=1) = a +
      logit(p) (see :func:`calibration_slope`; Van Calster et al. 2019). Ideal: 1 and 0. Their
      replicates are one Newton step from the fit on the observed data (Moulton & Zeger 1991),
      so the bootstrap stays a matrix product.

    References
    ----------
    Brier, G. W. (1950). Verification of forecasts expressed in terms of probability. Monthly
        Weather Review 78(1), 1–3.
    Murphy, A. H. (1973). A new vector partition of the probability score. Journal of Applied
        Meteorology 12(4), 595–600.
    Stephenson, D. B., Coelho, C. A. S. & Jolliffe, I. T. (2008). Two extra components in the
        Brier score decomposition. Weather and Forecasting 23(4), 752–757.
    Naeini, M. P., Cooper, G. F. & Hauskrecht, M. (2015). Obtaining well calibrated probabilities
        using Bayesian binning. Proceedings of the AAAI Conference on Artificial Intelligence 29(1).
    Guo, C., Pleiss, G., Sun, Y. & Weinberger, K. Q. (2017). On calibration of modern neural
        networks. Proceedings of the 34th International Conference on Machine Learning, PMLR 70,
        1321–1330.
    Kumar, A., Liang, P. & Ma, T. (2019). Verified uncertainty calibration. Advances in Neural
        Information Processing Systems 32.
    Bröcker, J. (2012). Estimating reliability and resolution of probability forecasts through
        decomposition of the empirical score. Climate Dynamics 39(3–4), 655–667.
    Ferro, C. A. T. & Fricker, T. E. (2012). A bias-corrected decomposition of the Brier score.
        Quarterly Journal of the Royal Meteorological Society 138(668), 1954–1960.
    Van Calster, B., McLernon, D. J., van Smeden, M., Wynants, L. & Steyerberg, E. W. (2019).
        Calibration: the Achilles heel of predictive analytics. BMC Medicine 17, 230.
    Moulton, L. H. & Zeger, S. L. (1991). Bootstrapping generalized linear models. Computational
        Statistics & Data Analysis 11(1), 53–63.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> p = rng.uniform(0.05, 0.95, 400)
    >>> df = pl.DataFrame({"model": "m", "subject_id": np.arange(400).astype(str),
    ...                    "y_true": (rng.random(400) < p).astype(float), "score": p})
    >>> out = calibration(df, n_boot=200)
    >>> out.select("quantity", "convention").rows()[:3]
    [('ece', 'top_label'), ('ece', 'positive_class'), ('ece_l2', 'top_label')]
    >>> slope = out.filter(quantity="slope").row(0, named=True)
    >>> bool(slope["ci_low"] < 1 < slope["ci_high"])
    True
    """
    frame = select_split(to_polars(predictions, name="predictions"), split)
    require_columns(frame, ["y_true"], name="predictions", why="for calibration")
    keys = group_keys(frame, by)
    avg = default_average_over(frame, average_over)
    boot = dict(levels=levels, n_boot=n_boot, seed=seed, alpha=alpha, scheme=scheme,
                interval=interval, strata=strata, average_over=avg)  # fmt: skip
    binary = probability_matrix(frame).shape[1] == 2
    wanted = _check_quantities(quantities, binary)
    conventions: tuple[Convention, ...] = (
        ("top_label", "positive_class") if binary else ("top_label",)
    )
    unit = (0.0, 1.0)
    ranges = {"reliability": unit, "resolution": unit, "uncertainty": (0.0, 0.25),
              "within_bin": (-np.inf, np.inf)}  # fmt: skip
    parts = []
    for name in wanted:
        if name in ("ece", "ece_l2"):
            for conv in conventions:
                extra = {"convention": conv}
                if name == "ece":
                    m = get_metric("ece", n_bins=n_bins, convention=conv)
                    rows = quantity_rows(frame, name, keys, boot, metric=m, value_range=unit,
                                         extra=extra)  # fmt: skip
                else:
                    m = _ece_l2_metric(n_bins, conv)
                    rows = quantity_rows(frame, name, keys, boot, metric=m, transform="sqrt",
                                         value_range=unit, extra=extra)  # fmt: skip
                parts.append(rows)
        elif name == "brier":
            parts.append(quantity_rows(frame, name, keys, boot, metric=get_metric("brier"),
                                       value_range=(0.0, 2.0)))  # fmt: skip
        elif name in ranges:
            m = _murphy_metric(name, n_bins)
            parts.append(quantity_rows(frame, name, keys, boot, metric=m, value_range=ranges[name]))
        else:
            m = _recalibration_metric(name)  # type: ignore[arg-type]
            parts.append(quantity_rows(frame, name, keys, boot, metric=m))
    out = pl.concat(parts, how="diagonal_relaxed")
    if "convention" not in out.columns:
        out = out.with_columns(convention=pl.lit(None, dtype=pl.String))
    lead = [*keys, "quantity", "convention"]
    out = out.select(*lead, *[c for c in out.columns if c not in lead])
    return out.sort(keys, maintain_order=True) if keys else out


def _check_quantities(quantities: Sequence[str] | None, binary: bool) -> list[str]:
    multi = ("ece", "ece_l2", "brier")
    if quantities is None:
        return list(_QUANTITIES if binary else multi)
    wanted = [quantities] if isinstance(quantities, str) else list(quantities)
    allowed = _QUANTITIES if binary else multi
    bad = [q for q in wanted if q not in allowed]
    if bad or not wanted:
        raise AnalysisError(
            f"quantities={wanted!r}: unknown or not defined for "
            f"{'binary' if binary else 'multi-class'} predictions: {bad}; allowed: {list(allowed)}"
        )
    return wanted


def reliability_diagram(
    predictions: Any,
    *,
    by: str | Sequence[str] | None = None,
    n_bins: int = 10,
    convention: Convention = "positive_class",
    split: str | None = "test",
) -> pl.DataFrame:
    """Reliability-diagram data per group: bins with their counts, pooled over trials.

    Parameters
    ----------
    predictions : polars/pandas DataFrame
        As for :func:`calibration`.
    by : column name(s), optional
        Extra grouping (e.g. ``"site"``); model, variant, perturbation, dataset always apart.
    n_bins, convention
        As in :func:`raybench_analysis.ece`.
    split : str or None
        Rows of this ``split`` (default ``"test"``).

    Returns
    -------
    polars.DataFrame
        The group columns and :func:`raybench_analysis.calibration_bins`' columns: ``bin_low``,
        ``bin_high``, ``n``, ``mean_conf``, ``frac``, ``gap``, ``convention``, ``n_bins``.

    Notes
    -----
    Plot ``frac`` against ``mean_conf``; the diagonal is perfect calibration; ``n`` says how much
    each point weighs (DeGroot & Fienberg 1983).

    References
    ----------
    DeGroot, M. H. & Fienberg, S. E. (1983). The comparison and evaluation of forecasters.
        Journal of the Royal Statistical Society D 32(1–2), 12–22.

    Examples
    --------
    >>> df = pl.DataFrame({"model": ["a", "a", "b"], "y_true": [1.0, 0.0, 1.0],
    ...                    "score": [0.9, 0.2, 0.7]})
    >>> reliability_diagram(df).select("model", "n", "frac").rows()
    [('a', 1, 0.0), ('a', 1, 1.0), ('b', 1, 1.0)]
    """
    frame = select_split(to_polars(predictions, name="predictions"), split)
    keys = group_keys(frame, by)
    groups = frame.sort(keys).group_by(keys, maintain_order=True) if keys else [((), frame)]
    parts = []
    for key, part in groups:
        probs = part.get_column("probs") if "probs" in part.columns else None
        score = part.get_column("score") if "score" in part.columns else None
        use_probs = score is None or score.null_count() > 0
        bins = calibration_bins(
            part.get_column("y_true"),
            None if use_probs else score,
            probs=np.asarray(probs.to_list()) if use_probs and probs is not None else None,
            n_bins=n_bins,
            convention=convention,
        )
        parts.append(
            bins.select(*[pl.lit(v).alias(k) for k, v in zip(keys, key, strict=True)], pl.all())
        )
    return pl.concat(parts, how="vertical_relaxed")


# ----------------------------------------------------------------------------- temperature


def _log_probs(frame: pl.DataFrame) -> np.ndarray:
    return np.log(np.clip(probability_matrix(frame), 1e-12, 1.0))


def _nll(beta: float, logp: np.ndarray, y: np.ndarray) -> float:
    z = beta * logp
    return float(np.mean(special.logsumexp(z, axis=1) - z[np.arange(len(y)), y]))


def _temperature(logp: np.ndarray, y: np.ndarray) -> float:
    res = optimize.minimize_scalar(
        lambda t: _nll(math.exp(t), logp, y),
        bounds=(math.log(1e-3), math.log(1e3)),
        method="bounded",
        options={"xatol": 1e-10},
    )
    return 1.0 / math.exp(res.x)


def fit_temperature(
    val_frame: Any, *, by: str | Sequence[str] | None = "trial", split: str | None = "val"
) -> pl.DataFrame:
    """Temperature T minimising the validation negative log-likelihood, per trial.

    Parameters
    ----------
    val_frame : polars/pandas DataFrame
        Validation predictions: ``y_true`` (class index) and ``score`` or ``probs``. Only rows
        with ``split == "val"`` are used when the column exists: the test fold is never touched.
    by : column name(s), ``"trial"`` or None
        ``"trial"`` (default): one T per trial (``dataset``, ``model``, ``variant``,
        ``perturbation``, ``outer_fold``, ``seed``, those present); ``None``: one T overall.
    split : str or None
        The rows to fit on (default ``"val"``).

    Returns
    -------
    polars.DataFrame
        The group columns, ``temperature`` (T), ``inverse_temperature`` (1/T, the factor applied
        to the logits), ``nll_raw``, ``nll_scaled``, ``n_obs``, ``method``.

    Notes
    -----
    Logits are recovered as log-probabilities (softmax is unchanged by a per-row constant), and
    T minimises (1/n) Σ_i [log Σ_k exp(ℓ_ik/T) − ℓ_{i,y_i}/T] (Guo et al. 2017). The
    objective is convex in β = 1/T, so a bounded scalar search over log β ∈ [log 10⁻³,
    log 10³] finds the global minimum. T > 1: the network was overconfident.

    References
    ----------
    Guo, C., Pleiss, G., Sun, Y. & Weinberger, K. Q. (2017). On calibration of modern neural
        networks. Proceedings of the 34th International Conference on Machine Learning, PMLR 70,
        1321–1330.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(0, 2, 5000)
    >>> y = (rng.random(5000) < special.expit(z)).astype(float)
    >>> t = fit_temperature(pl.DataFrame({"y_true": y, "score": special.expit(2 * z)}))
    >>> round(t["temperature"][0], 1)
    2.0
    """
    frame = to_polars(val_frame, name="val_frame")
    if split is not None and "split" in frame.columns:
        frame = frame.filter(pl.col("split") == split)
    if frame.height == 0:
        raise AnalysisError(
            f"fit_temperature: no validation rows (split={split!r}); temperature scaling is fitted "
            "on each trial's validation predictions only; record them (split='val') first"
        )
    require_columns(frame, ["y_true"], name="val_frame", why="for temperature scaling")
    if isinstance(by, str) and by == "trial":
        keys = group_keys(frame, None) + [c for c in TRIAL_COLUMNS if c in frame.columns]
    else:
        keys = group_keys(frame, by)
    groups = frame.sort(keys).group_by(keys, maintain_order=True) if keys else [((), frame)]
    rows = []
    for key, part in groups:
        logp = _log_probs(part)
        y = class_labels(part, logp.shape[1])
        temp = _temperature(logp, y)
        rows.append({
            **dict(zip(keys, key, strict=True)),
            "temperature": temp,
            "inverse_temperature": 1.0 / temp,
            "nll_raw": _nll(1.0, logp, y),
            "nll_scaled": _nll(1.0 / temp, logp, y),
            "n_obs": part.height,
            "method": "temperature scaling (Guo et al. 2017), NLL minimised on validation rows",
        })  # fmt: skip
    return pl.DataFrame(rows)


def apply_temperature(
    predictions: Any, temperatures: Any, *, variant: str = "calibrated"
) -> pl.DataFrame:
    """Rescale probabilities by fitted temperatures: softmax(log p / T), a ``variant`` of its own.

    Parameters
    ----------
    predictions : polars/pandas DataFrame
        Predictions with ``score`` and/or ``probs``.
    temperatures : polars/pandas DataFrame
        The output of :func:`fit_temperature`; joined on its group columns.
    variant : str
        Written into the ``variant`` column of the returned rows.

    Returns
    -------
    polars.DataFrame
        ``predictions``' columns with ``score`` / ``probs`` rescaled and ``variant`` set
        (``y_pred`` unchanged: a temperature keeps the argmax); a ``temperature`` column (the
        predictions table has one) holds the T applied.

    Notes
    -----
    p'_k = exp(log p_k / T) / Σ_j exp(log p_j / T); for a binary score, expit(logit(p)/T).

    References
    ----------
    Guo, C., Pleiss, G., Sun, Y. & Weinberger, K. Q. (2017). On calibration of modern neural
        networks. Proceedings of the 34th International Conference on Machine Learning, PMLR 70,
        1321–1330.

    Examples
    --------
    >>> df = pl.DataFrame({"y_true": [1.0], "score": [0.9]})
    >>> t = pl.DataFrame({"temperature": [2.0]})
    >>> round(apply_temperature(df, t)["score"][0], 6)
    0.75
    """
    frame = to_polars(predictions, name="predictions")
    temps = to_polars(temperatures, name="temperatures")
    require_columns(temps, ["temperature"], name="temperatures")
    skip = {"temperature", "inverse_temperature", "nll_raw", "nll_scaled", "n_obs", "method"}
    keys = [c for c in temps.columns if c not in skip]
    base = frame.drop("temperature", strict=False)  # a run's own column: replaced by the new T
    if keys:
        require_columns(frame, keys, name="predictions", why="to join the temperatures")
        joined = base.join(temps.select(*keys, "temperature"), on=keys, how="left")
    else:
        if temps.height != 1:
            raise AnalysisError("temperatures: several rows but no key column to join them on")
        joined = base.with_columns(temperature=pl.lit(temps["temperature"][0]))
    t = joined.get_column("temperature").to_numpy()
    if np.any(~np.isfinite(t)) or np.any(t <= 0):
        raise AnalysisError(
            "apply_temperature: some predictions have no fitted temperature (or T <= 0); "
            f"fit one per {keys or 'table'} on the validation rows of the same trials"
        )
    new: dict[str, Any] = {}
    logp = _log_probs(joined)
    scaled = special.softmax(logp / t[:, None], axis=1)
    if "score" in frame.columns and frame.get_column("score").null_count() == 0:
        p = joined.get_column("score").to_numpy()
        new["score"] = pl.Series("score", special.expit(_logits_raw(p) / t))
    if "probs" in frame.columns and frame.get_column("probs").null_count() == 0:
        new["probs"] = pl.Series("probs", scaled.tolist(), dtype=frame.schema["probs"])
    new["variant"] = pl.lit(variant)
    return joined.with_columns(**new).select(
        *frame.columns, *(["variant"] if "variant" not in frame.columns else [])
    )


def _logits_raw(p: np.ndarray) -> np.ndarray:
    return special.logit(np.clip(p, 1e-12, 1 - 1e-12))


def variants_as_models(predictions: Any, *, column: str = "variant") -> pl.DataFrame:
    """Rename each model to ``<model>[<variant>]`` and drop ``variant``, for paired comparisons.

    :func:`raybench_analysis.compare` pairs models evaluated on the same test samples; a
    temperature-scaled (``calibrated``) variant of a trial predicts exactly the raw variant's
    samples, so ``compare(variants_as_models(p), metric="log_loss")`` is the paired test of
    "does temperature scaling help?".

    Parameters
    ----------
    predictions : polars/pandas DataFrame
        Predictions with ``model`` and ``column``.
    column : str
        The column whose values become part of the model name (default ``"variant"``).

    Returns
    -------
    polars.DataFrame
        ``predictions`` with ``model`` renamed and ``column`` dropped.

    Examples
    --------
    >>> df = pl.DataFrame({"model": ["m", "m"], "variant": ["raw", "calibrated"]})
    >>> variants_as_models(df)["model"].to_list()
    ['m[raw]', 'm[calibrated]']
    """
    frame = to_polars(predictions, name="predictions")
    require_columns(frame, ["model", column], name="predictions", why="to rename variants")
    model = pl.col("model").cast(pl.String) + "[" + pl.col(column).cast(pl.String) + "]"
    return frame.with_columns(model=model).drop(column)
