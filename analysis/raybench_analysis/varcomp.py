"""Confidence intervals for the variance components of a linear mixed model.

``confint_varcomp(fit)`` (also ``fit.confint_varcomp()``) gives intervals for every random-effect
SD, correlation and the residual SD of a :func:`raybench_analysis.mixed.mixed` fit, by a
parametric bootstrap (lme4's ``confint(method = "boot")``) or the profile likelihood (lme4's
``confint(method = "profile")``). Wald intervals are not offered: the
sampling distribution of an SD is skewed and bounded at 0.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import scipy.sparse as sp
from scipy import optimize, stats

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
    method : ``"boot"`` (parametric bootstrap, percentile intervals) or ``"profile"``
        (profile-likelihood intervals, lme4's default ``confint(method = "profile")``).
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

    *Profile.* As lme4's ``profile.merMod``/``confint.thpr``: the model is refitted by maximum
    likelihood (also for a REML fit: lme4's ``devfun2`` calls ``refitML``), and the ML deviance,
    with the fixed effects profiled out, is taken as a function of the SDs, correlations and
    sigma (lme4's ``"sdcor"`` scale). For each parameter in turn it is minimised over all the
    others at fixed values ``v``; the limits are where the signed root
    ``zeta(v) = sign(v − v_ML) sqrt(dev(v) − dev_ML)`` equals ``∓z_{(1+level)/2}`` (Bates et al.
    2015, §5.1; Venzon & Moolgavkar 1988), found by Brent's method on the exact profile where
    lme4 interpolates a spline through profile points. A limit the profile does not reach
    before a boundary (an SD of 0, a correlation of ±1) is that boundary. The ``estimate``
    column stays the fit's (REML) estimate; the interval is centred on the ML fit, as lme4's.
    Deterministic; each limit costs a handful of constrained optimisations, so it is for
    small-to-medium designs (seconds on 200–300 rows).

    References
    ----------
    Bates, D., Mächler, M., Bolker, B. & Walker, S. (2015). Fitting linear mixed-effects models
        using lme4. Journal of Statistical Software 67(1), 1–48.
    Davison, A. C. & Hinkley, D. V. (1997). Bootstrap Methods and their Application.
        Cambridge University Press.
    Venzon, D. J. & Moolgavkar, S. H. (1988). A method for computing profile-likelihood-based
        confidence intervals. Journal of the Royal Statistical Society C 37(1), 87–94.

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
    elif method == "profile":
        low, high = _profile_limits(fit._cp, fit._theta, fit.sigma, level)
        name = "profile likelihood (ML deviance, sd/cor scale)"
    else:
        raise AnalysisError(f"confint_varcomp: method={method!r}; give 'profile' or 'boot'")
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


def _theta_of(cp: CrossProducts, nat: np.ndarray) -> np.ndarray:
    """lme4's relative Cholesky ``theta`` from ``(SDs, correlations of each block..., sigma)``."""
    sigma, off, relative = nat[-1], 0, []
    for b in cp.blocks:
        sds = nat[off : off + b.k]
        off += b.k
        cor = np.eye(b.k)
        for i in range(b.k):
            for j in range(i + 1, b.k):
                cor[i, j] = cor[j, i] = nat[off]
                off += 1
        relative.append(np.outer(sds, sds) * cor / sigma**2)
    return cp.theta_from_covariances(relative)


def _profile_limits(
    cp: CrossProducts, theta: np.ndarray, sigma: float, level: float, reml: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Profile-likelihood limits of every SD, correlation and sigma (lme4's ``profile``).

    As lme4's ``profile.merMod`` (through ``devfun2``, which refits by ML): the ML deviance
    with the fixed effects profiled out is a function of the SDs, correlations and sigma; for
    each of them in turn it is minimised over the others at fixed values, and the limits are
    where ``zeta = sign(v − v_hat) sqrt(dev(v) − dev_ML)`` reaches ``±z_(1+level)/2`` (found
    by root finding on the exact profile, where lme4 interpolates a spline through the
    profile's points). A limit the profile never reaches before the boundary (an SD of 0, a
    correlation of ±1) is that boundary. ``reml=True`` profiles the REML criterion instead (not
    what lme4 does; analysis/validation/varcomp_profile.py uses it to show that this is what
    makes SD intervals ~5% wider than lme4's).
    """
    n_nat = len(_natural(cp, theta, sigma))
    kinds: list[str] = []
    for b in cp.blocks:
        kinds += ["sd"] * b.k + ["cor"] * (b.k * (b.k - 1) // 2)
    kinds.append("sigma")
    bounds = [
        (0.0, None) if k == "sd" else (-1.0, 1.0) if k == "cor" else (1e-12, None) for k in kinds
    ]

    def deviance_nat(nat: np.ndarray) -> float:
        try:
            return float(cp.evaluate(_theta_of(cp, nat), float(nat[-1]), reml)["deviance"])
        except np.linalg.LinAlgError:
            return np.inf

    # the ML fit (lme4's refitML): theta by bounded search, sigma its ML estimate given theta
    tb = []
    for b in cp.blocks:
        r, c = np.tril_indices(b.k)
        tb.extend((0.0, None) if i == j else (None, None) for i, j in zip(r, c, strict=True))

    def deviance_theta(t: np.ndarray) -> float:
        try:
            return float(cp.evaluate(t, None, reml)["deviance"])
        except np.linalg.LinAlgError:
            return np.inf

    opts = {"ftol": 1e-12, "gtol": 1e-8, "maxiter": 2000}
    res = optimize.minimize(deviance_theta, theta, method="L-BFGS-B", bounds=tb, options=opts)
    theta_ml = res.x
    nat_ml = _natural(cp, theta_ml, float(cp.evaluate(theta_ml, None, reml)["sigma"]))
    base = deviance_nat(nat_ml)
    scale = np.where(np.array(kinds) == "cor", 1.0, np.maximum(np.abs(nat_ml), 1e-3 * nat_ml[-1]))
    cut = float(stats.norm.ppf(0.5 + level / 2.0)) ** 2

    def profile(j: int, v: float, start: np.ndarray) -> tuple[float, np.ndarray]:
        """min over the other parameters of dev − dev_ML with parameter j at v; the argmin."""
        free = [i for i in range(n_nat) if i != j]

        def f(u: np.ndarray) -> float:
            nat = np.empty(n_nat)
            nat[free], nat[j] = u * scale[free], v
            return deviance_nat(nat)

        b = [
            (None if lo is None else lo / s, None if hi is None else hi / s)
            for (lo, hi), s in zip([bounds[i] for i in free], scale[free], strict=True)
        ]
        r = optimize.minimize(
            f, start[free] / scale[free], method="L-BFGS-B", bounds=b, options=opts
        )
        out = start.copy()
        out[free], out[j] = r.x * scale[free], v
        return float(r.fun) - base, out

    z = float(np.sqrt(cut))
    low, high = np.empty(n_nat), np.empty(n_nat)
    for j, kind in enumerate(kinds):
        est = float(nat_ml[j])
        edges = (0.0 if kind != "cor" else -1.0, 1.0 if kind == "cor" else np.inf)
        for side, store, edge in ((1.0, high, edges[1]), (-1.0, low, edges[0])):
            store[j] = _limit(profile, j, est, side, edge, scale[j], kind, nat_ml, z)
    return low, high


def _limit(profile, j, est, side, edge, scale, kind, nat_ml, z) -> float:
    """Where ``zeta`` crosses ``side * z``: bracketed by extrapolating ``zeta`` linearly (it is
    close to linear in the parameter, the reason lme4 profiles it), then Brent's method."""
    start, v_in, zeta_in = nat_ml.copy(), est, 0.0
    v_out = est + side * (0.5 * scale if kind != "cor" else 0.2)
    for _ in range(60):
        if side * (v_out - edge) >= 0:
            v_out = edge if kind != "sigma" else 0.5 * v_in
        d, nxt = profile(j, v_out, start)
        zeta = float(np.sqrt(max(d, 0.0)))
        if zeta > z:
            break
        if v_out == edge:
            return float(edge)
        # linear extrapolation of zeta through the last two points, a little beyond z
        slope = (zeta - zeta_in) / abs(v_out - v_in) if zeta > zeta_in else 0.0
        jump = 1.1 * (z - zeta) / slope if slope > 0 else 2.0 * abs(v_out - est)
        start, v_in, zeta_in = nxt, v_out, zeta
        v_out = v_out + side * max(jump, 1e-3 * abs(v_out - est))
    else:
        raise AnalysisError("confint_varcomp: the profile did not reach the confidence limit")

    def g(v: float) -> float:
        return float(np.sqrt(max(profile(j, v, start)[0], 0.0))) - z

    lo, hi = min(v_in, v_out), max(v_in, v_out)
    return float(optimize.brentq(g, lo, hi, xtol=1e-6 * max(abs(est), 1e-3 * scale, 1e-12)))
