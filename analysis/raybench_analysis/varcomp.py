"""Confidence intervals for the variance components of a linear mixed model.

``confint_varcomp(fit)`` (also ``fit.confint_varcomp()``) gives intervals for every random-effect
SD, correlation and the residual SD of a :func:`raybench_analysis.mixed.mixed` fit, by a
parametric bootstrap (lme4's ``confint(method = "boot")``). Wald intervals are not offered: the
sampling distribution of an SD is skewed and bounded at 0.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import scipy.sparse as sp
from scipy import optimize

from ._frames import AnalysisError
from .satterthwaite import CrossProducts, random_design

if TYPE_CHECKING:
    from .mixed import MixedResult

__all__ = ["confint_varcomp"]

_SCHEMA = {
    "group": pl.String,
    "parameter": pl.String,
    "term": pl.String,
    "estimate": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "method": pl.String,
}


def confint_varcomp(
    fit: MixedResult,
    method: str = "boot",
    *,
    level: float = 0.95,
    n_boot: int = 500,
    seed: int = 0,
) -> pl.DataFrame:
    """Intervals for the random-effect SDs, correlations and residual SD of a mixed model.

    Parameters
    ----------
    fit : a linear mixed model from :func:`raybench_analysis.mixed.mixed` (REML or ML).
    method : ``"boot"`` (parametric bootstrap, percentile intervals; profile-likelihood
        intervals are not implemented).
    level : confidence level.
    n_boot : bootstrap replicates (``method="boot"``).
    seed : seed of the bootstrap simulations.

    Returns
    -------
    polars DataFrame with columns group, parameter (``"sd"``, ``"cor"``; ``"sigma"`` on the
    residual row, group ``"Residual"``), term (the coefficient, or ``"a:b"`` for a correlation),
    estimate, ci_low, ci_high, method; rows in lme4's order (each group's SDs then its
    correlations; the residual last).

    Notes
    -----
    *Bootstrap.* ``n_boot`` responses are simulated from the fitted model
    (``y* = X beta_hat + Z b* + e*``, ``b* ~ N(0, G_hat)``, ``e* ~ N(0, sigma_hat^2 I)``), the
    model is refitted to each by the same method, and the interval is the percentile interval
    of each parameter's replicates (Davison & Hinkley 1997, §2.4, §5.2). It takes the fitted
    model as true: the percentile interval is not bias-corrected, and an SD whose replicates pile
    up at 0 gets a lower limit of 0. Monte Carlo error of the limits is of order
    ``sqrt(p (1 − p) / n_boot) / density``; use n_boot >= 1000 for reporting.

    References
    ----------
    Bates, D., Mächler, M., Bolker, B. & Walker, S. (2015). Fitting linear mixed-effects models
        using lme4. Journal of Statistical Software 67(1), 1–48.
    Davison, A. C. & Hinkley, D. V. (1997). Bootstrap Methods and their Application.
        Cambridge University Press.

    Examples
    --------
    >>> import polars as pl
    >>> from raybench_analysis.mixed import mixed
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(np.arange(8), 6)
    >>> y = rng.normal(0, 1, 8)[g] + rng.normal(0, 0.5, 48)
    >>> fit = mixed("y ~ 1 + (1 | g)", pl.DataFrame({"y": y, "g": g}))
    >>> ci = confint_varcomp(fit, n_boot=20)
    >>> ci.select("group", "parameter").rows()
    [('g', 'sd'), ('Residual', 'sigma')]
    """
    if fit._cp is None or fit._theta is None or fit._x is None or fit._beta is None:
        raise AnalysisError("confint_varcomp: needs a linear mixed model fitted by mixed()")
    if not 0.0 < level < 1.0:
        raise AnalysisError(f"confint_varcomp: level={level!r} must be in (0, 1)")
    reml = fit.method == "REML"
    labels = _labels(fit._cp)
    estimate = _natural(fit._cp, fit._theta, fit.sigma)
    if method == "boot":
        if int(n_boot) != n_boot or n_boot < 20:
            raise AnalysisError(f"confint_varcomp: n_boot={n_boot!r}; give at least 20")
        reps = _bootstrap(fit, reml, int(n_boot), seed)
        tail = (1.0 - level) / 2.0
        low, high = np.quantile(reps, [tail, 1.0 - tail], axis=0)
        name = f"parametric bootstrap, percentile ({int(n_boot)} replicates)"
    else:
        raise AnalysisError(f"confint_varcomp: method={method!r}; only 'boot' is implemented")
    rows = [
        {
            "group": g,
            "parameter": p,
            "term": t,
            "estimate": float(e),
            "ci_low": float(lo),
            "ci_high": float(hi),
            "method": name,
        }
        for (g, p, t), e, lo, hi in zip(labels, estimate, low, high, strict=True)
    ]
    return pl.DataFrame(rows, schema=_SCHEMA)


def _labels(cp: CrossProducts) -> list[tuple[str, str, str | None]]:
    out: list[tuple[str, str, str | None]] = []
    for b in cp.blocks:
        out.extend((b.group, "sd", t) for t in b.terms)
        for i in range(b.k):
            for j in range(i + 1, b.k):
                out.append((b.group, "cor", f"{b.terms[i]}:{b.terms[j]}"))
    out.append(("Residual", "sigma", None))
    return out


def _natural(cp: CrossProducts, theta: np.ndarray, sigma: float) -> np.ndarray:
    """(SDs, correlations of each block..., sigma) from lme4's relative Cholesky ``theta``."""
    out = []
    for b, cov in zip(cp.blocks, cp.covariances(theta), strict=True):
        sds = np.sqrt(np.clip(np.diag(cov), 0.0, None)) * sigma
        out.extend(sds)
        for i in range(b.k):
            for j in range(i + 1, b.k):
                denom = np.sqrt(cov[i, i] * cov[j, j])
                out.append(cov[i, j] / denom if denom > 0 else 0.0)
    out.append(sigma)
    return np.asarray(out, dtype=float)


def _bootstrap(fit: MixedResult, reml: bool, n_boot: int, seed: int) -> np.ndarray:
    cp, theta, x, beta, sigma = fit._cp, fit._theta, fit._x, fit._beta, fit.sigma
    assert cp is not None and theta is not None and x is not None and beta is not None

    z = random_design(cp.blocks, cp.n)
    lam = sp.csc_matrix((theta[cp.lam_index], (cp.lam_rows, cp.lam_cols)), shape=(cp.q, cp.q))
    zl = (z @ lam).tocsc()
    mean = x @ beta
    rng = np.random.default_rng(seed)
    bounds = []
    for b in cp.blocks:
        r, c = np.tril_indices(b.k)
        bounds.extend((0.0, None) if i == j else (None, None) for i, j in zip(r, c, strict=True))
    reps = []
    for _ in range(n_boot):
        y = mean + sigma * (zl @ rng.standard_normal(cp.q) + rng.standard_normal(cp.n))
        star = dataclasses.replace(
            cp,
            xty=x.T @ y,
            yty=float(y @ y),
            zty=np.asarray(z.T @ y).ravel(),
        )

        def deviance(t: np.ndarray, star: CrossProducts = star) -> float:
            try:
                return float(star.evaluate(t, None, reml)["deviance"])
            except np.linalg.LinAlgError:
                return np.inf

        res = optimize.minimize(deviance, theta, method="L-BFGS-B", bounds=bounds)
        s = float(star.evaluate(res.x, None, reml)["sigma"])
        reps.append(_natural(cp, res.x, s))
    return np.asarray(reps)
