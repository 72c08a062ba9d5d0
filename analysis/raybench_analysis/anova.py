"""Likelihood-ratio tests between nested mixed models (lme4's ``anova(m0, m1)``)."""

from __future__ import annotations

import math

import polars as pl
from scipy import stats

from ._frames import AnalysisError
from .glmm import GlmmResult
from .mixed import MixedResult, mixed

__all__ = ["anova"]

_SCHEMA = {
    "model": pl.String,
    "formula": pl.String,
    "n_par": pl.Int64,
    "aic": pl.Float64,
    "bic": pl.Float64,
    "loglik": pl.Float64,
    "deviance": pl.Float64,
    "statistic": pl.Float64,
    "df": pl.Int64,
    "p_value": pl.Float64,
    "p_boundary": pl.Float64,
    "method": pl.String,
}


def _fixed(m: MixedResult | GlmmResult) -> list[str]:
    return list(m._names)


def anova(
    m0: MixedResult | GlmmResult, m1: MixedResult | GlmmResult, *, refit: bool | None = None
) -> pl.DataFrame:
    """Likelihood-ratio test of a smaller mixed model against a larger one fitted to the same data.

    Parameters
    ----------
    m0, m1 : MixedResult or GlmmResult
        Two fits of :func:`raybench_analysis.mixed` (both linear or both logistic) on the same
        rows, one nested in the other (the order does not matter: the one with fewer parameters
        is the null model).
    refit : bool, optional
        Refit REML fits by ML before comparing. Default: when the fixed effects differ (REML
        likelihoods of different fixed-effect designs are not comparable); when only the
        random part differs the REML criteria are compared, which is the better test of a
        variance component. ``refit=True`` always refits (lme4's default).

    Returns
    -------
    polars DataFrame
        Two rows (smaller model first): model (``"m0"``, ``"m1"``), formula, n_par, aic, bic,
        loglik, deviance (of the fits compared, after any refit), statistic (the LR chi-square
        ``2 (loglik1 − loglik0)``), df (difference in parameters), p_value (chi-square on df),
        p_boundary (the 50:50 chi-bar-square p-value when only random effects differ, else
        null), method; the first row's test columns are null.

    Notes
    -----
    ``LR = 2 (l1 − l0) ~ chi^2_df`` under H0 when the null values are interior. A variance
    component tested against 0 lies on the boundary of its space, and then the reference
    distribution is a mixture: for adding one random effect to a model with ``k`` correlated
    ones it is ``0.5 chi^2_k + 0.5 chi^2_{k+1}`` (Self & Liang 1987; Stram & Lee 1994), so
    ``p_boundary = 0.5 P(chi^2_df ≥ LR) + 0.5 P(chi^2_{df−1} ≥ LR)`` (``chi^2_0`` a point
    mass at 0). The plain chi-square p-value is then conservative (about twice too large for
    one variance). For more than one added random term the mixture weights differ and
    ``p_boundary`` is only an approximation; a parametric bootstrap is exact.

    References
    ----------
    Self, S. G. & Liang, K.-Y. (1987). Asymptotic properties of maximum likelihood estimators
    and likelihood ratio tests under nonstandard conditions. *Journal of the American
    Statistical Association*, 82(398), 605–610.
    Stram, D. O. & Lee, J. W. (1994). Variance components testing in the longitudinal mixed
    effects model. *Biometrics*, 50(4), 1171–1177.
    Bates, D., Mächler, M., Bolker, B. & Walker, S. (2015). Fitting linear mixed-effects models
    using lme4. *Journal of Statistical Software*, 67(1), 1–48.
    Pinheiro, J. C. & Bates, D. M. (2000). *Mixed-Effects Models in S and S-PLUS*. Springer,
    §2.4.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(np.arange(10), 6)
    >>> x = rng.normal(size=60)
    >>> y = 0.5 * x + rng.normal(0, 1, 10)[g] + rng.normal(0, 0.5, 60)
    >>> d = pl.DataFrame({"y": y, "x": x, "g": g})
    >>> out = anova(mixed("y ~ 1 + (1 | g)", d), mixed("y ~ x + (1 | g)", d))
    >>> out["method"][1], int(out["df"][1])
    ('likelihood-ratio test (ML refit)', 1)
    """
    if isinstance(m0, MixedResult) and isinstance(m1, MixedResult):
        linear = True
    elif isinstance(m0, GlmmResult) and isinstance(m1, GlmmResult):
        linear = False
    else:
        raise AnalysisError(
            "anova: give two linear (family='gaussian') or two logistic (family='binomial') "
            f"fits, got {type(m0).__name__} and {type(m1).__name__}"
        )
    if m0.n_obs != m1.n_obs:
        raise AnalysisError(
            f"anova: the fits used {m0.n_obs} and {m1.n_obs} rows; compare fits of the same data"
        )
    if m0.n_par > m1.n_par:
        m0, m1 = m1, m0
    same_fixed = set(_fixed(m0)) == set(_fixed(m1))
    method = "likelihood-ratio test"
    if linear:
        assert isinstance(m0, MixedResult) and isinstance(m1, MixedResult)
        reml = "REML" in (m0.method, m1.method)
        do_refit = (not same_fixed) if refit is None else refit
        if reml and not do_refit:
            if not same_fixed:
                raise AnalysisError(
                    "anova: the fixed effects differ, so the REML fits are not comparable; "
                    "use refit=True (or fit with method='ML')"
                )
            if m0.method != m1.method:
                raise AnalysisError("anova: one fit is REML and the other ML; fit both alike")
            method += " (REML)"
        elif reml:
            m0, m1 = (_ml(m) for m in (m0, m1))
            method += " (ML refit)"
        else:
            method += " (ML)"
    else:
        method += " (Laplace)" if max(m0.nagq, m1.nagq) == 1 else " (adaptive quadrature)"
    stat = 2.0 * (m1.loglik - m0.loglik)
    df = m1.n_par - m0.n_par
    if df < 1:
        raise AnalysisError(
            "anova: the models have the same number of parameters; a likelihood-ratio test "
            "needs one nested in the other"
        )
    stat = max(stat, 0.0)
    p = float(stats.chi2.sf(stat, df))
    boundary = None
    if same_fixed:
        lower = float(stats.chi2.sf(stat, df - 1)) if df > 1 else float(stat <= 0.0)
        boundary = 0.5 * p + 0.5 * lower
    rows = []
    for name, m in (("m0", m0), ("m1", m1)):
        rows.append(
            {
                "model": name,
                "formula": m.formula,
                "n_par": m.n_par,
                "aic": m.aic,
                "bic": m.bic,
                "loglik": m.loglik,
                "deviance": m.deviance,
                "statistic": None,
                "df": None,
                "p_value": None,
                "p_boundary": None,
                "method": method,
            }
        )
    rows[1].update(statistic=stat, df=df, p_value=p, p_boundary=boundary)
    if not math.isfinite(stat):
        raise AnalysisError("anova: a log-likelihood is not finite; check the fits' warnings")
    return pl.DataFrame(rows, schema=_SCHEMA)


def _ml(m: MixedResult) -> MixedResult:
    if m.method == "ML":
        return m
    if m._data is None:
        raise AnalysisError("anova: this fit keeps no data to refit by ML; fit with method='ML'")
    out = mixed(m.formula, m._data, method="ML")
    assert isinstance(out, MixedResult)
    return out
