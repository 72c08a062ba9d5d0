"""Logistic mixed models (binomial GLMM, logit link) fitted like ``lme4::glmer``.

``mixed("correct ~ model + (1 | site/subject_id)", data, family="binomial")`` fits the model
``logit P(y = 1 | b) = X beta + Z b``, ``b ~ N(0, G(theta))`` by maximising the Laplace
approximation of the marginal likelihood (``nAGQ=1``, as glmer's default) or, for a single scalar
random effect, adaptive Gauss–Hermite quadrature with ``nAGQ`` nodes. The formula grammar and the
random-effect design are those of :mod:`raybench_analysis.mixed` (module ``formula``).

The computation follows Bates et al. (2015, §3 and the glmer vignette): the random effects are
written ``b = Lambda(theta) u`` with ``u ~ N(0, I)``; for given ``(theta, beta)`` penalised
iteratively reweighted least squares (PIRLS, Newton steps with step halving) finds the conditional
mode ``u*`` of ``-2 log p(y | u) + |u|^2`` on the sparse system ``Lambda' Z' W Z Lambda + I``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy import optimize, special, stats

from ._frames import AnalysisError, to_polars
from .formula import FormulaError, parse_formula
from .satterthwaite import Block, _hessian_at, random_design

__all__ = ["GlmmResult", "conditional_modes", "glmm"]

_FIXED_SCHEMA = {
    "term": pl.String,
    "estimate": pl.Float64,
    "std_error": pl.Float64,
    "statistic": pl.Float64,
    "p_value": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "odds_ratio": pl.Float64,
    "or_low": pl.Float64,
    "or_high": pl.Float64,
    "method": pl.String,
}
_RANDOM_SCHEMA = {"group": pl.String, "term": pl.String, "variance": pl.Float64, "sd": pl.Float64}
_RANEF_SCHEMA = {
    "group": pl.String,
    "level": pl.String,
    "term": pl.String,
    "estimate": pl.Float64,
    "std_error": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
}
_CORR_SCHEMA = {"group": pl.String, "term_a": pl.String, "term_b": pl.String, "corr": pl.Float64}


@dataclass
class GlmmResult:
    """A fitted binomial (logit) mixed model.

    Attributes
    ----------
    formula : the lme4 formula as given.
    method : ``"Laplace"`` or ``"adaptive Gauss-Hermite quadrature (nAGQ=k)"``.
    fixed : polars DataFrame with columns term, estimate (log odds), std_error, statistic (Wald
        z), p_value (two-sided), ci_low, ci_high (Wald interval at ``1 - alpha``), odds_ratio,
        or_low, or_high (the exponentiated estimate and interval), method.
    random : polars DataFrame with columns group, term, variance, sd (on the logit scale).
    correlations : polars DataFrame with columns group, term_a, term_b, corr.
    loglik : the approximate log-likelihood at the optimum (glmer's ``logLik``).
    converged : whether the optimiser converged and the Hessian of the deviance is positive
        definite.
    n_obs, n_levels : observations and levels per grouping factor.
    nagq : number of quadrature nodes (1: Laplace).
    warnings : messages of the final fit (boundary estimates, non-convergence).
    theta, beta : lme4's relative Cholesky parameters and the fixed effects.
    """

    formula: str
    method: str
    fixed: pl.DataFrame
    random: pl.DataFrame
    correlations: pl.DataFrame
    loglik: float
    converged: bool
    n_obs: int
    n_levels: dict[str, int]
    nagq: int
    warnings: list[str] = field(default_factory=list)
    theta: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    beta: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    vcov_matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)
    _names: list[str] = field(default_factory=list, repr=False)
    _problem: _Problem | None = field(default=None, repr=False)
    _levels: list[np.ndarray] = field(default_factory=list, repr=False)
    _data: pl.DataFrame | None = field(default=None, repr=False)

    @property
    def deviance(self) -> float:
        """``-2 * loglik`` (the Laplace/AGQ objective glmer minimises)."""
        return -2.0 * self.loglik

    @property
    def n_par(self) -> int:
        """Estimated parameters: fixed effects plus variance parameters."""
        return len(self.beta) + len(self.theta)

    @property
    def aic(self) -> float:
        """Akaike information criterion ``-2 loglik + 2 k``."""
        return self.deviance + 2.0 * self.n_par

    @property
    def bic(self) -> float:
        """Bayesian information criterion ``-2 loglik + k log(n)``."""
        return self.deviance + self.n_par * float(np.log(self.n_obs))

    @property
    def vcov(self) -> pl.DataFrame:
        """Covariance of the fixed effects (glmer's ``vcov``) as a frame with a term column."""
        frame = pl.DataFrame(self.vcov_matrix, schema=self._names, orient="row")
        return frame.insert_column(0, pl.Series("term", self._names))

    def ranef(self, alpha: float = 0.05) -> pl.DataFrame:
        """Conditional modes of the random effects (logit scale) with conditional SDs.

        Returns
        -------
        polars DataFrame with columns group, level, term, estimate, std_error, ci_low, ci_high.

        Notes
        -----
        ``b* = Lambda u*`` at the conditional mode of the final fit, with covariance
        ``Lambda (Lambda' Z' W Z Lambda + I)^-1 Lambda'`` (lme4's ``ranef(condVar = TRUE)``
        for glmer fits); intervals are ``b* ± z_{1−α/2} sd``.

        Examples
        --------
        >>> rng = np.random.default_rng(1)
        >>> g = np.repeat(np.arange(10), 20)
        >>> y = (rng.random(200) < 0.5).astype(float)
        >>> glmm("y ~ 1 + (1 | g)", pl.DataFrame({"y": y, "g": g})).ranef().height
        10
        """
        assert self._problem is not None
        prob = self._problem
        lam = prob.lam(self.theta)
        zl = (prob.z @ lam).tocsc()
        u, _, w = prob.pirls(zl, prob.x @ self.beta, np.zeros(prob.q))
        a = (zl.T @ sp.diags(w) @ zl + sp.identity(prob.q)).tocsc()
        blocks = [(b.group, b.terms, lv) for b, lv in zip(prob.blocks, self._levels, strict=True)]
        return conditional_modes(blocks, lam, a, u, 1.0, alpha)


def conditional_modes(
    blocks: list[tuple[str, tuple[str, ...], np.ndarray]],
    lam: sp.csc_matrix,
    a: sp.csc_matrix,
    u: np.ndarray,
    scale: float,
    alpha: float,
) -> pl.DataFrame:
    """Conditional modes ``b = Lambda u`` and SDs from ``scale · Lambda A^-1 Lambda'``.

    Shared by linear and logistic mixed models. ``blocks`` lists (group, coefficient names,
    level labels) in the order of the random-effects design (level-major within a block);
    ``A`` is ``Lambda' Z' W Z Lambda + I`` at the mode (``W = I`` for a linear model).

    Returns
    -------
    polars DataFrame with columns group, level, term, estimate, std_error, ci_low, ci_high.
    """
    b = np.asarray(lam @ u).ravel()
    q = a.shape[0]
    if q == 1:
        ainv_lt = lam.T.toarray() / a.toarray()[0, 0]
    else:
        ainv_lt = spla.splu(a.tocsc()).solve(np.asarray(lam.T.toarray(), dtype=float))
    var = scale * np.asarray((lam.multiply(ainv_lt.T)).sum(axis=1)).ravel()
    sd = np.sqrt(np.clip(var, 0.0, None))
    zq = float(stats.norm.ppf(1.0 - alpha / 2.0))
    cols: dict[str, list] = {k: [] for k in _RANEF_SCHEMA}
    off = 0
    for group, terms, levels in blocks:
        k = len(terms)
        n = len(levels) * k
        cols["group"].extend([group] * n)
        cols["level"].extend(np.repeat(np.asarray(levels).astype(str), k).tolist())
        cols["term"].extend(list(terms) * len(levels))
        est, s = b[off : off + n], sd[off : off + n]
        cols["estimate"].extend(est.tolist())
        cols["std_error"].extend(s.tolist())
        cols["ci_low"].extend((est - zq * s).tolist())
        cols["ci_high"].extend((est + zq * s).tolist())
        off += n
    return pl.DataFrame(cols, schema=_RANEF_SCHEMA)


class _Problem:
    """The data of one fit and the Laplace/AGQ deviance as a function of ``(theta, beta)``."""

    def __init__(self, y: np.ndarray, x: np.ndarray, blocks: list[Block]) -> None:
        self.y, self.x, self.blocks = y, x, blocks
        self.n, self.p = x.shape
        self.z = random_design(blocks, self.n)
        self.q = self.z.shape[1]
        rows, cols, index = [], [], []
        offset, theta_off = 0, 0
        for b in blocks:
            r, c = np.tril_indices(b.k)
            levels = np.arange(b.n_levels)[:, None] * b.k
            rows.append((offset + levels + r[None, :]).ravel())
            cols.append((offset + levels + c[None, :]).ravel())
            index.append(np.tile(theta_off + np.arange(len(r)), b.n_levels))
            offset += b.n_levels * b.k
            theta_off += b.n_theta
        self.lam_rows, self.lam_cols = np.concatenate(rows), np.concatenate(cols)
        self.lam_index = np.concatenate(index)
        self.n_theta = theta_off
        self.lower = np.concatenate(
            [np.where(r == c, 0.0, -np.inf) for b in blocks for r, c in [np.tril_indices(b.k)]]
        )
        self.u = np.zeros(self.q)  # warm start of the conditional modes
        self.beta0 = np.zeros(self.p)  # start of beta in the first stage

    def lam(self, theta: np.ndarray) -> sp.csc_matrix:
        q = self.q
        return sp.csc_matrix((theta[self.lam_index], (self.lam_rows, self.lam_cols)), shape=(q, q))

    @staticmethod
    def _cond_dev(y: np.ndarray, eta: np.ndarray) -> np.ndarray:
        """Per-observation ``-2 log p(y | eta)`` of a Bernoulli response with logit link."""
        return 2.0 * (np.logaddexp(0.0, eta) - y * eta)

    def pirls(self, zl: sp.csc_matrix, offset: np.ndarray, u0: np.ndarray) -> tuple:
        """Conditional mode of ``u``: minimise ``sum dev(y, offset + ZL u) + |u|^2``."""
        y, u = self.y, u0.copy()
        eye = sp.identity(self.q, format="csc")

        def objective(v: np.ndarray) -> float:
            return float(self._cond_dev(y, offset + zl @ v).sum() + v @ v)

        obj = objective(u)
        for _ in range(200):
            eta = offset + zl @ u
            mu = special.expit(eta)
            w = mu * (1.0 - mu)
            grad = zl.T @ (y - mu) - u
            hess = (zl.T @ sp.diags(w) @ zl + eye).tocsc()
            step = spla.spsolve(hess, grad) if self.q > 1 else grad / hess.toarray().ravel()
            step = np.asarray(step).ravel()
            t = 1.0
            while True:
                new = u + t * step
                new_obj = objective(new)
                if new_obj <= obj + 1e-12 or t < 1e-8:
                    break
                t /= 2.0
            done = abs(obj - new_obj) < 1e-12 * (1.0 + abs(obj)) and np.max(np.abs(t * step)) < 1e-9
            u, obj = new, new_obj
            if done:
                break
        eta = offset + zl @ u
        mu = special.expit(eta)
        w = mu * (1.0 - mu)
        return u, eta, w

    def deviance(self, theta: np.ndarray, beta: np.ndarray, nagq: int = 1) -> float:
        """Laplace (``nagq=1``) or adaptive Gauss–Hermite approximation of ``-2 log L``."""
        zl = (self.z @ self.lam(theta)).tocsc()
        offset = self.x @ beta
        u, eta, w = self.pirls(zl, offset, self.u)
        self.u = u
        cond = self._cond_dev(self.y, eta)
        if nagq == 1:
            a = (zl.T @ sp.diags(w) @ zl + sp.identity(self.q)).tocsc()
            return float(cond.sum() + u @ u + _logdet(a))
        # one scalar random effect: each level is an independent one-dimensional integral
        b = self.blocks[0]
        lam = float(theta[0])
        design = b.design[:, 0]
        curv = np.bincount(b.codes, weights=w * (lam * design) ** 2, minlength=b.n_levels) + 1.0
        scale = 1.0 / np.sqrt(curv)
        nodes, weights = np.polynomial.hermite_e.hermegauss(nagq)
        weights = weights / np.sqrt(2.0 * np.pi)
        terms = np.empty((nagq, b.n_levels))
        for k, z in enumerate(nodes):
            uk = u + scale * z
            dev_k = np.bincount(
                b.codes,
                weights=self._cond_dev(self.y, offset + lam * design * uk[b.codes]),
                minlength=b.n_levels,
            )
            terms[k] = -0.5 * (dev_k + uk**2) + 0.5 * z**2
        top = terms.max(axis=0)
        log_int = top + np.log(weights @ np.exp(terms - top)) + np.log(scale)
        return float(-2.0 * log_int.sum())

    def profiled(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """glmer's first stage (nAGQ=0): beta jointly with u in PIRLS, Laplace deviance."""
        zl = (self.z @ self.lam(theta)).tocsc()
        full = sp.hstack([zl, sp.csc_matrix(self.x)], format="csc")
        beta = self.beta0.copy()
        coef = np.concatenate([self.u, beta])
        pen = np.concatenate([np.ones(self.q), np.zeros(self.p)])

        def objective(v: np.ndarray) -> float:
            return float(self._cond_dev(self.y, full @ v).sum() + (pen * v) @ v)

        obj = objective(coef)
        for _ in range(200):
            mu = special.expit(full @ coef)
            w = mu * (1.0 - mu)
            grad = full.T @ (self.y - mu) - pen * coef
            hess = (full.T @ sp.diags(w) @ full + sp.diags(pen)).tocsc()
            step = np.asarray(spla.spsolve(hess, grad)).ravel()
            t = 1.0
            while True:
                new = coef + t * step
                new_obj = objective(new)
                if new_obj <= obj + 1e-12 or t < 1e-8:
                    break
                t /= 2.0
            done = abs(obj - new_obj) < 1e-12 * (1.0 + abs(obj)) and np.max(np.abs(t * step)) < 1e-9
            coef, obj = new, new_obj
            if done:
                break
        u, beta = coef[: self.q], coef[self.q :]
        mu = special.expit(full @ coef)
        w = mu * (1.0 - mu)
        a = (zl.T @ sp.diags(w) @ zl + sp.identity(self.q)).tocsc()
        self.u = u
        return float(self._cond_dev(self.y, full @ coef).sum() + u @ u + _logdet(a)), beta


def _logdet(a: sp.csc_matrix) -> float:
    """log-determinant of a sparse symmetric positive definite matrix (sparse LU)."""
    if a.shape[0] == 1:
        return float(np.log(a.toarray()[0, 0]))
    lu = spla.splu(a, permc_spec="MMD_AT_PLUS_A", options={"SymmetricMode": True})
    return float(np.sum(np.log(np.abs(lu.U.diagonal()))) + np.sum(np.log(np.abs(lu.L.diagonal()))))


def _hessian(f: Any, x: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Central finite-difference Hessian, its points moved inside a bound at 0 first."""
    h = 1e-4 * np.maximum(np.abs(x), 1.0)
    # step inside the bounds: a boundary theta (0) is moved to h for the differences
    x = np.where(np.isfinite(lower) & (x - 2 * h < lower), lower + 2 * h, x)
    return _hessian_at(f, x, h)


def glmm(
    formula: str,
    data: Any,
    *,
    nagq: int = 1,
    alpha: float = 0.05,
) -> GlmmResult:
    """Fit a logistic mixed model written in lme4 syntax (binomial family, logit link).

    Parameters
    ----------
    formula : str
        lme4 formula with a 0/1 (or boolean) response, e.g.
        ``"correct ~ model + (1 | site/subject_id)"``.
    data : polars/pandas DataFrame (or pyarrow Table, dict of columns) holding the variables.
    nagq : int
        Quadrature nodes per random-effect level: 1 (default) is the Laplace approximation;
        more (adaptive Gauss–Hermite quadrature, glmer's ``nAGQ``) is allowed only for a single
        scalar random effect, e.g. ``(1 | subject_id)``.
    alpha : float
        1 − level of the Wald intervals.

    Returns
    -------
    GlmmResult
        ``.fixed`` (columns term, estimate, std_error, statistic, p_value, ci_low, ci_high,
        odds_ratio, or_low, or_high, method), ``.random`` (group, term, variance, sd),
        ``.correlations`` (group, term_a, term_b, corr), ``.loglik``, ``.aic``, ``.bic``,
        ``.vcov``, ``.converged``, ``.warnings``.

    Notes
    -----
    With ``b = Lambda(theta) u``, ``u ~ N(0, I)`` and ``eta = X beta + Z Lambda u`` the Laplace
    deviance is ``d(theta, beta) = sum_i dev(y_i, eta_i*) + |u*|^2 + log det(L L')`` with
    ``L L' = Lambda' Z' W Z Lambda + I``, ``W = diag(mu (1 − mu))`` at the conditional mode ``u*``
    and ``dev = −2 log p(y | eta)`` (Bates et al. 2015; the glmer vignette). With ``nAGQ = K``
    each level's integral is ``s_j sum_k w_k exp(g_j(u*_j + s_j z_k) + z_k^2/2)`` with
    ``g_j(u) = log p(y_j | u) − u^2/2``, ``s_j = (d^2(−g_j)/du^2)^(−1/2)`` at the mode and
    ``(z_k, w_k)`` the K-point Gauss–Hermite rule for N(0, 1) (Pinheiro & Bates 1995;
    Liu & Pierce 1994). As glmer, ``theta`` is first optimised with ``beta`` estimated jointly
    with ``u`` (nAGQ = 0), then ``(theta, beta)`` jointly on ``d``; the covariance of ``beta``
    is the ``beta`` block of ``2 H^(−1)``, ``H`` the finite-difference Hessian of ``d`` in
    ``(theta, beta)`` (glmer's ``use.hessian = TRUE``). Tests are Wald z:
    ``z = beta / se``, ``p = 2 Phi(−|z|)``, interval ``beta ± z_{1−α/2} se``, odds ratio
    ``exp(beta)`` with the exponentiated interval. Wald tests of log odds can be
    anti-conservative with few clusters; a likelihood-ratio test (``anova``) is preferable then.

    References
    ----------
    Bates, D., Mächler, M., Bolker, B. & Walker, S. (2015). Fitting linear mixed-effects models
    using lme4. *Journal of Statistical Software*, 67(1), 1–48.
    Pinheiro, J. C. & Bates, D. M. (1995). Approximations to the log-likelihood function in the
    nonlinear mixed-effects model. *Journal of Computational and Graphical Statistics*, 4(1),
    12–35.
    Liu, Q. & Pierce, D. A. (1994). A note on Gauss–Hermite quadrature. *Biometrika*, 81(3),
    624–629.
    Breslow, N. E. & Clayton, D. G. (1993). Approximate inference in generalized linear mixed
    models. *Journal of the American Statistical Association*, 88(421), 9–25.

    Examples
    --------
    >>> import numpy as np, polars as pl
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(np.arange(20), 10)
    >>> x = rng.normal(size=200)
    >>> eta = -0.5 + 1.0 * x + rng.normal(0, 0.8, 20)[g]
    >>> y = (rng.random(200) < 1 / (1 + np.exp(-eta))).astype(float)
    >>> fit = glmm("y ~ x + (1 | g)", pl.DataFrame({"y": y, "x": x, "g": g}))
    >>> fit.fixed.columns[:4], fit.method
    (['term', 'estimate', 'std_error', 'statistic'], 'Laplace')
    >>> bool(fit.fixed["odds_ratio"][1] > 1)
    True
    """
    from .mixed import _check_data, _clean, _evaluate_terms, _patsy  # mixed imports glmm

    if not isinstance(nagq, int | np.integer) or nagq < 1:
        raise AnalysisError(f"glmm: nAGQ={nagq!r}; give a positive integer (1 = Laplace)")
    parsed = parse_formula(formula)
    frame = to_polars(data, name="data")
    _check_data(parsed, frame)
    response = parsed.response
    if response in frame.columns and frame.schema[response] == pl.Boolean:
        frame = frame.with_columns(pl.col(response).cast(pl.Float64))
    pdf = frame.to_pandas()
    y_df, x_df = _patsy(parsed.fixed_formula, pdf, "fixed part", lhs=True)
    y = np.asarray(y_df, dtype=float).ravel() if y_df.shape[1] == 1 else np.array([np.nan])
    if y_df.shape[1] != 1 or not np.all(np.isin(y, (0.0, 1.0))):
        raise FormulaError(
            f"formula {formula!r}: family='binomial' needs a 0/1 (or boolean) response in "
            f"{response!r}; recode it (e.g. correct = (y_pred == y_true)) — proportions with "
            "trials are not supported"
        )
    x = np.asarray(x_df, dtype=float)
    names = [_clean(c) for c in x_df.columns]
    if np.linalg.matrix_rank(x) < x.shape[1]:
        raise FormulaError(
            f"formula {formula!r}: the fixed-effect design is rank deficient (columns {names}); "
            "drop collinear or empty terms"
        )
    terms = _evaluate_terms(parsed, frame, pdf)
    if not terms:
        raise FormulaError(f"formula {formula!r}: no random term; use a logistic regression")
    scalar = len(terms) == 1 and len(terms[0].names) == 1
    if nagq > 1 and not scalar:
        raise AnalysisError(
            f"glmm: nAGQ={nagq} needs a single scalar random effect such as (1 | subject_id); "
            f"{formula!r} has {sum(len(t.names) for t in terms)} random coefficients. Use nAGQ=1 "
            "(Laplace), as glmer does"
        )
    blocks = [Block(t.spec.group_name, t.names, t.codes, len(t.levels), t.design) for t in terms]
    prob = _Problem(y, x, blocks)
    notes: list[str] = []
    theta, beta, converged = _optimise(prob, nagq, notes)
    dev = prob.deviance(theta, beta, nagq)

    def full(par: np.ndarray) -> float:
        return prob.deviance(par[: prob.n_theta], par[prob.n_theta :], nagq)

    par = np.concatenate([theta, beta])
    hess = _hessian(full, par, np.concatenate([prob.lower, np.full(prob.p, -np.inf)]))
    try:
        inv = np.linalg.inv(hess)
        vcov = 2.0 * inv[prob.n_theta :, prob.n_theta :]
        hess_ok = bool(np.all(np.linalg.eigvalsh((hess + hess.T) / 2) > 0))
    except np.linalg.LinAlgError:
        vcov, hess_ok = np.full((prob.p, prob.p), np.nan), False
    if not hess_ok:
        # at a boundary (a variance at 0) the full Hessian is not definite: use beta's block
        try:
            vcov = 2.0 * np.linalg.inv(hess[prob.n_theta :, prob.n_theta :])
        except np.linalg.LinAlgError:
            vcov = np.full((prob.p, prob.p), np.nan)
        notes.append(
            "Hessian of the deviance not positive definite (a variance at or near 0?); "
            "fixed-effect SEs from the fixed-effect block only"
        )
    vcov = (vcov + vcov.T) / 2.0
    se = np.sqrt(np.clip(np.diag(vcov), 0.0, None))
    zq = float(stats.norm.ppf(1.0 - alpha / 2.0))
    method = "Laplace" if nagq == 1 else f"adaptive Gauss-Hermite quadrature (nAGQ={nagq})"
    rows = []
    for j, name in enumerate(names):
        lo, hi = beta[j] - zq * se[j], beta[j] + zq * se[j]
        zval = beta[j] / se[j] if se[j] > 0 else float("nan")
        rows.append(
            {
                "term": name,
                "estimate": float(beta[j]),
                "std_error": float(se[j]),
                "statistic": float(zval),
                "p_value": float(2.0 * stats.norm.sf(abs(zval))),
                "ci_low": float(lo),
                "ci_high": float(hi),
                "odds_ratio": float(np.exp(beta[j])),
                "or_low": float(np.exp(lo)),
                "or_high": float(np.exp(hi)),
                "method": "Wald z-test",
            }
        )
    random, correlations = _random_frames(prob, theta)
    if any(b.k == 1 for b in blocks) and np.any(theta[np.isfinite(prob.lower)] < 1e-4):
        notes.append("boundary (singular) fit: a random-effect variance is estimated at 0")
    return GlmmResult(
        formula=parsed.text,
        method=method,
        fixed=pl.DataFrame(rows, schema=_FIXED_SCHEMA),
        random=random,
        correlations=correlations,
        loglik=-0.5 * dev,
        converged=converged and hess_ok,
        n_obs=len(y),
        n_levels={t.spec.group_name: len(t.levels) for t in terms},
        nagq=nagq,
        warnings=notes,
        theta=theta,
        beta=beta,
        vcov_matrix=vcov,
        _names=names,
        _problem=prob,
        _levels=[t.levels for t in terms],
        _data=frame,
    )


def _optimise(prob: _Problem, nagq: int, notes: list[str]) -> tuple[np.ndarray, np.ndarray, bool]:
    """glmer's two stages: theta with beta in PIRLS (nAGQ=0), then (theta, beta) jointly."""
    # start: beta of the logistic regression without random effects, theta = 1 (lme4's start)
    prob.beta0 = _logistic(prob.x, prob.y)
    theta0 = np.where(np.isfinite(prob.lower), 1.0, 0.0)
    bounds_t = [(0.0, None) if np.isfinite(lo) else (None, None) for lo in prob.lower]
    stage1 = optimize.minimize(
        lambda t: prob.profiled(t)[0], theta0, method="L-BFGS-B", bounds=bounds_t
    )
    theta1 = stage1.x
    _, beta1 = prob.profiled(theta1)

    def full(par: np.ndarray) -> float:
        return prob.deviance(par[: prob.n_theta], par[prob.n_theta :], nagq)

    bounds = bounds_t + [(None, None)] * prob.p
    start = np.concatenate([theta1, beta1])
    res = optimize.minimize(
        full, start, method="L-BFGS-B", bounds=bounds, options={"ftol": 1e-14, "gtol": 1e-8}
    )
    # L-BFGS-B on a numerically differentiated objective can stop early: restart once
    res2 = optimize.minimize(
        full, res.x, method="L-BFGS-B", bounds=bounds, options={"ftol": 1e-15, "gtol": 1e-9}
    )
    best = res2 if res2.fun <= res.fun else res
    if not best.success:
        notes.append(f"optimiser: {best.message}")
    x = best.x
    return x[: prob.n_theta], x[prob.n_theta :], bool(best.success) or res.success


def _logistic(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Maximum-likelihood logistic regression by Newton's method (a start for beta)."""
    beta = np.zeros(x.shape[1])
    for _ in range(50):
        mu = special.expit(x @ beta)
        w = mu * (1 - mu) + 1e-10
        step = np.linalg.solve(x.T @ (x * w[:, None]), x.T @ (y - mu))
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta


def _random_frames(prob: _Problem, theta: np.ndarray) -> tuple[pl.DataFrame, pl.DataFrame]:
    rand_rows, corr_rows, off = [], [], 0
    for b in prob.blocks:
        t = np.zeros((b.k, b.k))
        t[np.tril_indices(b.k)] = theta[off : off + b.n_theta]
        off += b.n_theta
        cov = t @ t.T
        sds = np.sqrt(np.clip(np.diag(cov), 0.0, None))
        for k, name in enumerate(b.terms):
            rand_rows.append(
                {"group": b.group, "term": name, "variance": float(cov[k, k]), "sd": float(sds[k])}
            )
        for i in range(b.k):
            for j in range(i + 1, b.k):
                denom = sds[i] * sds[j]
                corr_rows.append(
                    {
                        "group": b.group,
                        "term_a": b.terms[i],
                        "term_b": b.terms[j],
                        "corr": float(cov[i, j] / denom) if denom > 0 else float("nan"),
                    }
                )
    return (
        pl.DataFrame(rand_rows, schema=_RANDOM_SCHEMA),
        pl.DataFrame(corr_rows, schema=_CORR_SCHEMA),
    )


def warn_binary_gaussian(y: np.ndarray, formula: str) -> None:
    """Warn when a Gaussian (linear) mixed model is given a 0/1 response."""
    values = np.unique(y)
    if len(values) <= 2 and np.all(np.isin(values, (0.0, 1.0))):
        warnings.warn(
            f"mixed: the response of {formula!r} is 0/1; a linear mixed model treats it as a "
            "linear probability model (wrong variance, predictions outside [0, 1]). Use "
            "family='binomial' for a logistic mixed model.",
            UserWarning,
            stacklevel=3,
        )
