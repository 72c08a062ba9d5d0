"""Linear mixed models with lme4 formulas, fitted by statsmodels, tested with Satterthwaite df.

``mixed("score ~ model + (1 | site/subject_id)", data)`` fits by REML (or ML) with statsmodels'
``MixedLM`` and reports fixed effects with lmerTest-style Satterthwaite t-tests, random-effect SDs
and correlations, the residual SD and the log-likelihood, as polars frames. How the formula maps on
statsmodels (one grouping factor with correlated effects through ``groups`` + ``exog_re``; nested,
crossed and extra factors through variance components, with one all-data group for crossed designs)
is described in docs/statistics/mixed-models.md. Above ``DIRECT_ROWS`` rows statsmodels is skipped
and lme4's profiled deviance is minimised directly (sparse algebra; same estimates, far faster).
``family="binomial"`` fits a logistic mixed model (module ``glmm``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy import stats

from ._frames import AnalysisError, require_columns, to_polars
from .formula import FormulaError, ParsedFormula, RandomTerm, parse_formula
from .glmm import GlmmResult, conditional_modes, glmm, warn_binary_gaussian
from .satterthwaite import Block, CrossProducts, SatterthwaiteResult, satterthwaite
from .varcomp import confint_varcomp

__all__ = ["DIRECT_ROWS", "MixedResult", "mixed"]

#: above this many rows ``mixed`` skips statsmodels (whose per-group dense algebra grows with the
#: group sizes) and minimises lme4's profiled deviance directly from lme4's start, with a sparse
#: factorisation of the random-effects system (module ``satterthwaite``).
DIRECT_ROWS = 5000

_FIXED_SCHEMA = {
    "term": pl.String,
    "estimate": pl.Float64,
    "std_error": pl.Float64,
    "df": pl.Float64,
    "statistic": pl.Float64,
    "p_value": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "method": pl.String,
}


@dataclass
class MixedResult:
    """A fitted linear mixed model.

    Attributes
    ----------
    formula : the lme4 formula as given.
    method : ``"REML"`` or ``"ML"``.
    fixed : polars DataFrame with columns term, estimate, std_error, df (Satterthwaite), statistic
        (t), p_value (two-sided), ci_low, ci_high (t interval at ``1 - alpha``), method.
    random : polars DataFrame with columns group, term, variance, sd; the last row is
        group ``"Residual"`` (term null) with ``sigma``.
    correlations : polars DataFrame with columns group, term_a, term_b, corr (correlated blocks).
    sigma : residual standard deviation.
    loglik : log-likelihood at the optimum (restricted log-likelihood for REML, as lme4's logLik).
    converged : whether statsmodels' optimiser converged and the deviance Hessian is positive
        definite (needed for Satterthwaite df).
    n_obs, n_levels : number of observations and of levels per grouping factor.
    warnings : messages statsmodels emitted while fitting (boundary fits, retries).
    """

    formula: str
    method: str
    fixed: pl.DataFrame
    random: pl.DataFrame
    correlations: pl.DataFrame
    sigma: float
    loglik: float
    converged: bool
    n_obs: int
    n_levels: dict[str, int]
    warnings: list[str] = field(default_factory=list)
    statsmodels_result: Any = field(default=None, repr=False)
    _satt: SatterthwaiteResult | None = field(default=None, repr=False)
    _names: list[str] = field(default_factory=list, repr=False)
    _beta: np.ndarray | None = field(default=None, repr=False)
    _n_par: int = field(default=0, repr=False)
    _cp: CrossProducts | None = field(default=None, repr=False)
    _theta: np.ndarray | None = field(default=None, repr=False)
    _levels: list[np.ndarray] = field(default_factory=list, repr=False)
    _data: pl.DataFrame | None = field(default=None, repr=False)
    _slices: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)
    _x: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_par(self) -> int:
        """Estimated parameters: fixed effects, variance parameters and the residual SD."""
        return self._n_par

    def ranef(self, alpha: float = 0.05) -> pl.DataFrame:
        """Conditional modes (BLUPs) of every random effect with their conditional SDs.

        Answers "which site is worse than average, and how sure are we?".

        Parameters
        ----------
        alpha : 1 − level of the normal intervals.

        Returns
        -------
        polars DataFrame with columns group, level, term, estimate (conditional mode),
        std_error (conditional SD), ci_low, ci_high, one row per level and coefficient.

        Notes
        -----
        With ``b = Lambda u`` the conditional modes are ``u* = (Lambda' Z' Z Lambda + I)^-1
        Lambda' Z' (y − X beta)``, and the conditional covariance is
        ``sigma^2 Lambda (Lambda' Z' Z Lambda + I)^-1 Lambda'`` (lme4's ``ranef(condVar = TRUE)``,
        Bates et al. 2015, §5.1); it ignores the uncertainty in beta and theta, so the intervals
        ``estimate ± z_{1−α/2} std_error`` are somewhat narrow with few groups.

        Examples
        --------
        >>> rng = np.random.default_rng(0)
        >>> g = np.repeat(np.arange(6), 8)
        >>> y = rng.normal(0, 1, 6)[g] + rng.normal(0, 0.5, 48)
        >>> re = mixed("y ~ 1 + (1 | g)", pl.DataFrame({"y": y, "g": g})).ranef()
        >>> re.columns
        ['group', 'level', 'term', 'estimate', 'std_error', 'ci_low', 'ci_high']
        """
        assert self._cp is not None and self._theta is not None and self._beta is not None
        cp, theta = self._cp, self._theta
        lam = sp.csc_matrix((theta[cp.lam_index], (cp.lam_rows, cp.lam_cols)), shape=(cp.q, cp.q))
        a = (lam.T @ cp.ztz @ lam + sp.identity(cp.q)).tocsc()
        rhs = np.asarray(lam.T @ (cp.zty - cp.ztx @ self._beta)).ravel()
        u = spla.spsolve(a, rhs) if cp.q > 1 else rhs / a.toarray().ravel()
        blocks = [(b.group, b.terms, lv) for b, lv in zip(cp.blocks, self._levels, strict=True)]
        return conditional_modes(blocks, lam, a, np.asarray(u).ravel(), self.sigma**2, alpha)

    def confint_varcomp(
        self, method: str = "boot", *, level: float = 0.95, n_boot: int = 500, seed: int = 0
    ) -> pl.DataFrame:
        """Parametric-bootstrap or profile-likelihood intervals of the SDs, correlations, sigma.

        See :func:`raybench_analysis.varcomp.confint_varcomp` (lme4's ``confint``).
        """
        return confint_varcomp(self, method, level=level, n_boot=n_boot, seed=seed)

    def anova(self) -> pl.DataFrame:
        """F-test of each fixed-effect term (all its columns = 0), Satterthwaite's df.

        Returns
        -------
        polars DataFrame with columns term, num_df, den_df, statistic (F), p_value, method; one
        row per term of the fixed part except the intercept (a factor with k levels: k − 1
        numerator df).

        Notes
        -----
        ``F = (L beta)' (L V L')^-1 (L beta) / q`` with ``L`` selecting the term's columns; the
        denominator df combine the per-eigenvector Satterthwaite df as lmerTest does
        (Kuznetsova et al. 2017, §3.3). This is a marginal (type III) test of the columns as
        coded; for a term that is in no interaction it equals lmerTest's ``anova(m)``.

        Examples
        --------
        >>> rng = np.random.default_rng(0)
        >>> g = np.repeat(np.arange(6), 9)
        >>> arm = np.tile(["a", "b", "c"], 18)
        >>> y = rng.normal(0, 1, 6)[g] + (arm == "b") + rng.normal(0, 0.5, 54)
        >>> fit = mixed("y ~ arm + (1 | g)", pl.DataFrame({"y": y, "g": g, "arm": arm}))
        >>> fit.anova().select("term", "num_df").row(0)
        ('arm', 2.0)
        """
        assert self._satt is not None and self._beta is not None
        rows = []
        for term, (lo, hi) in self._slices.items():
            if term == "(Intercept)":
                continue
            ell = np.zeros((hi - lo, len(self._names)))
            ell[np.arange(hi - lo), np.arange(lo, hi)] = 1.0
            res = self._satt.ftest(ell, self._beta)
            rows.append({"term": term, **res, "method": "F-test, Satterthwaite df"})
        schema = {
            "term": pl.String,
            "num_df": pl.Float64,
            "den_df": pl.Float64,
            "statistic": pl.Float64,
            "p_value": pl.Float64,
            "method": pl.String,
        }
        return pl.DataFrame(rows, schema=schema)

    @property
    def deviance(self) -> float:
        """``-2 * loglik`` (lme4's REML criterion for REML fits, deviance for ML fits)."""
        return -2.0 * self.loglik

    @property
    def aic(self) -> float:
        """Akaike information criterion ``-2 loglik + 2 k`` (k: fixed + variance parameters)."""
        return self.deviance + 2.0 * self._n_par

    @property
    def bic(self) -> float:
        """Bayesian information criterion ``-2 loglik + k log(n)``."""
        return self.deviance + self._n_par * float(np.log(self.n_obs))

    @property
    def vcov(self) -> pl.DataFrame:
        """Covariance of the fixed effects (lme4's ``vcov``) as a frame with a term column."""
        assert self._satt is not None
        frame = pl.DataFrame(self._satt.vcov, schema=self._names, orient="row")
        return frame.insert_column(0, pl.Series("term", self._names))

    def contrast(
        self, weights: dict[str, float] | list[float], alpha: float = 0.05
    ) -> pl.DataFrame:
        """Satterthwaite t-test of a linear combination ``L beta`` of the fixed effects.

        Parameters
        ----------
        weights : a mapping term -> weight (missing terms weigh 0) or a full list in term order.
        alpha : level of the two-sided interval.

        Returns
        -------
        polars DataFrame, one row: estimate, std_error, df, statistic, p_value, ci_low, ci_high,
        method.
        """
        assert self._satt is not None and self._beta is not None
        if isinstance(weights, dict):
            unknown = sorted(set(weights) - set(self._names))
            if unknown:
                raise AnalysisError(
                    f"contrast: unknown term(s) {unknown}; fixed-effect terms are {self._names}"
                )
            ell = np.array([float(weights.get(t, 0.0)) for t in self._names])
        else:
            ell = np.asarray(weights, dtype=float)
            if ell.shape != (len(self._names),):
                raise AnalysisError(
                    f"contrast: expected {len(self._names)} weights (terms {self._names}), "
                    f"got shape {ell.shape}"
                )
        row = _test_row(self._satt, ell, float(ell @ self._beta), alpha)
        return pl.DataFrame([row], schema={k: v for k, v in _FIXED_SCHEMA.items() if k != "term"})


def _test_row(satt: SatterthwaiteResult, ell: np.ndarray, estimate: float, alpha: float) -> dict:
    res = satt.test(ell, estimate)
    q = float(stats.t.ppf(1.0 - alpha / 2.0, res["df"]))
    res["ci_low"] = estimate - q * res["std_error"]
    res["ci_high"] = estimate + q * res["std_error"]
    res["method"] = "t-test, Satterthwaite df"
    return res


# --------------------------------------------------------------------------------------------
# design


@dataclass
class _Term:
    """A random term evaluated on the data."""

    spec: RandomTerm
    codes: np.ndarray
    levels: np.ndarray
    design: np.ndarray
    names: tuple[str, ...]


def _factor(frame: pl.DataFrame, columns: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes and level labels of the combination of ``columns``."""
    key = pl.concat_str([pl.col(c).cast(pl.String) for c in columns], separator=":")
    labels = frame.select(key.alias("k"))["k"].to_numpy()
    levels, codes = np.unique(labels.astype(str), return_inverse=True)
    return codes.astype(np.int64), levels


def _patsy(formula: str, pdf: Any, where: str, *, lhs: bool = False):
    try:
        import patsy
    except ImportError as exc:  # statsmodels can run on formulaic alone
        raise AnalysisError(
            "mixed: needs patsy (statsmodels' formula engine) to build design matrices; "
            "install it with `pip install patsy`"
        ) from exc

    try:
        if lhs:
            return patsy.dmatrices(formula, pdf, NA_action="raise", return_type="dataframe")
        return patsy.dmatrix(formula, pdf, NA_action="raise", return_type="dataframe")
    except patsy.PatsyError as exc:
        raise FormulaError(
            f"formula: cannot evaluate the {where} {formula!r} on the data:\n{exc}\n"
            "Check the column names and that the columns have no missing values."
        ) from exc


def _nested_in(inner: np.ndarray, outer: np.ndarray) -> bool:
    """True when each level of ``inner`` occurs within a single level of ``outer``."""
    pairs = np.unique(np.stack([inner, outer], axis=1), axis=0)
    return len(pairs) == len(np.unique(inner))


def _plan(terms: list[_Term], formula: str) -> tuple[int | None, int | None]:
    """Choose the statsmodels grouping: (primary term index, index of the exog_re term).

    Returns ``(None, None)`` for a single all-data group (crossed designs).
    """
    factors: dict[tuple[str, ...], np.ndarray] = {}
    for t in terms:
        factors.setdefault(t.spec.group, t.codes)
    candidates = [
        g
        for g, codes in factors.items()
        if all(_nested_in(other, codes) for h, other in factors.items() if h != g)
    ]

    def correlated(t: _Term) -> bool:
        return len(t.names) > 1

    primary: tuple[str, ...] | None = None
    for g in candidates:
        if any(correlated(t) and t.spec.group == g for t in terms):
            primary = g
            break
    if primary is None and candidates:
        primary = candidates[0]
    n_correlated = sum(correlated(t) for t in terms if t.spec.group == primary)
    bad = [t for t in terms if correlated(t) and (t.spec.group != primary or n_correlated > 1)]
    if bad:
        t = bad[0]
        raise FormulaError(
            f"formula {formula!r}: the correlated random term {t.spec.source!r} (coefficients "
            f"{list(t.names)} by {t.spec.group_name!r}) cannot be fitted together with the other "
            "terms: statsmodels' MixedLM allows correlated random coefficients for one grouping "
            "factor only, and only when every other grouping factor is nested in it. Fit "
            f"uncorrelated coefficients with '||', e.g. (1 + x || {t.spec.group_name}), or drop "
            "the other factors."
        )
    if primary is None:
        return None, None
    on_primary = [i for i, t in enumerate(terms) if t.spec.group == primary]
    re_index = next((i for i in on_primary if correlated(terms[i])), None)
    if re_index is None:
        re_index = next((i for i in on_primary if terms[i].spec.intercept), on_primary[0])
    return on_primary[0], re_index


def _vc_spec(terms: list[_Term], groups: np.ndarray, skip: int | None):
    """statsmodels VCSpec: one variance component per (term, coefficient) not in exog_re."""
    from statsmodels.regression.mixed_linear_model import VCSpec

    labels = np.unique(groups)
    rows = [np.flatnonzero(groups == g) for g in labels]
    names, colnames, mats = [], [], []
    for i, t in enumerate(terms):
        if i == skip:
            continue
        for j, coef in enumerate(t.names):
            names.append(f"{t.spec.group_name}|{coef}")
            per_group_cols, per_group_mats = [], []
            for idx in rows:
                sub_levels, sub_codes = np.unique(t.codes[idx], return_inverse=True)
                mat = np.zeros((len(idx), len(sub_levels)))
                mat[np.arange(len(idx)), sub_codes] = t.design[idx, j]
                per_group_mats.append(mat)
                per_group_cols.append([str(t.levels[lv]) for lv in sub_levels])
            colnames.append(per_group_cols)
            mats.append(per_group_mats)
    return VCSpec(names, colnames, mats)


def _clean(name: str) -> str:
    return "(Intercept)" if name == "Intercept" else name


def _evaluate_terms(parsed: ParsedFormula, frame: pl.DataFrame, pdf: Any) -> list[_Term]:
    out = []
    n = frame.height
    for spec in parsed.random:
        codes, levels = _factor(frame, spec.group)
        cols, names = [], []
        if spec.intercept:
            cols.append(np.ones((n, 1)))
            names.append("(Intercept)")
        if spec.slopes:
            mat = _patsy(spec.slope_formula(), pdf, f"random slopes of {spec.source}")
            cols.append(np.asarray(mat, dtype=float))
            names.extend(_clean(c) for c in mat.columns)
        out.append(_Term(spec, codes, levels, np.hstack(cols), tuple(names)))
    return out


def _check_data(parsed: ParsedFormula, frame: pl.DataFrame) -> None:
    require_columns(frame, parsed.grouping_columns, name="data", why="as grouping factors")
    for col in parsed.grouping_columns:
        nulls = frame[col].is_null()
        if nulls.any():
            row = int(nulls.arg_max())
            raise AnalysisError(
                f"data: grouping column {col!r} is missing at row {row}; every observation needs "
                "a level. Drop those rows or fill them."
            )
    if frame.height == 0:
        raise AnalysisError("data: no rows; give at least a few observations per group")


# --------------------------------------------------------------------------------------------
# fit


def mixed(
    formula: str,
    data: Any,
    method: str = "REML",
    *,
    alpha: float = 0.05,
    family: str = "gaussian",
    nagq: int = 1,
) -> MixedResult | GlmmResult:
    """Fit a linear mixed model written in lme4 syntax; Satterthwaite t-tests for fixed effects.

    Parameters
    ----------
    formula : str
        lme4 formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``, ``"y ~ 1 + (1 | a/b)"``,
        ``"y ~ 1 + (1 | a) + (1 | b)"``, ``"score ~ model + (1 | split:model)"``; see
        :func:`raybench_analysis.formula.parse_formula` for the grammar.
    data : polars/pandas DataFrame (or pyarrow Table, dict of columns) holding the variables.
    method : ``"REML"`` (default; unbiased variance components) or ``"ML"`` (for likelihood-ratio
        tests of fixed effects).
    alpha : level of the fixed-effect confidence intervals.
    family : ``"gaussian"`` (default, linear mixed model; a 0/1 response gets a warning) or
        ``"binomial"`` (logistic mixed model, logit link: :func:`raybench_analysis.glmm.glmm`,
        which returns a ``GlmmResult`` with Wald z-tests and odds ratios; ``method`` is ignored).
    nagq : quadrature nodes for ``family="binomial"`` (1: Laplace; more: adaptive Gauss–Hermite
        quadrature, a single scalar random effect only), as glmer's ``nAGQ``.

    Returns
    -------
    MixedResult
        ``.fixed`` (term, estimate, std_error, df, statistic, p_value, ci_low, ci_high, method),
        ``.random`` (group, term, variance, sd), ``.correlations`` (group, term_a, term_b, corr),
        ``.sigma``, ``.loglik``, ``.method``, ``.converged``; ``.contrast()`` tests ``L beta``.

    Notes
    -----
    The model is ``y = X beta + Z b + e`` with ``b ~ N(0, G)``, ``e ~ N(0, sigma^2 I)``. statsmodels
    maximises the (restricted) likelihood; fixed-effect covariances are lme4's
    ``V = sigma^2 (X' V_rel^{-1} X)^{-1}`` and the t-tests use Satterthwaite's degrees of freedom
    ``nu = 2 (L V L')^2 / (g' A g)`` (Kuznetsova et al. 2017), computed numerically on the profiled
    covariance in lme4's ``(theta, sigma)`` parameters (module ``satterthwaite``).

    References
    ----------
    Bates, D., Mächler, M., Bolker, B. & Walker, S. (2015). Fitting linear mixed-effects models
    using lme4. *Journal of Statistical Software*, 67(1), 1–48.
    Kuznetsova, A., Brockhoff, P. B. & Christensen, R. H. B. (2017). lmerTest package: tests in
    linear mixed effects models. *Journal of Statistical Software*, 82(13), 1–26.
    Satterthwaite, F. E. (1946). An approximate distribution of estimates of variance components.
    *Biometrics Bulletin*, 2(6), 110–114.
    Seabold, S. & Perktold, J. (2010). statsmodels: econometric and statistical modeling with
    Python. *Proceedings of the 9th Python in Science Conference*, 92–96.

    Examples
    --------
    >>> import numpy as np, polars as pl
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(np.arange(8), 5)
    >>> y = 1.0 + rng.normal(0, 1, 8)[g] + rng.normal(0, 0.5, 40)
    >>> fit = mixed("y ~ 1 + (1 | g)", pl.DataFrame({"y": y, "g": g}))
    >>> round(fit.fixed["df"][0], 3)  # balanced one-way: the ANOVA df, groups - 1
    7.0
    """
    if family == "binomial":
        return glmm(formula, data, nagq=nagq, alpha=alpha)
    if family != "gaussian":
        raise AnalysisError(f"mixed: family={family!r}; allowed: 'gaussian', 'binomial'")
    meth = str(method).upper()
    if meth not in ("REML", "ML"):
        raise AnalysisError(f"mixed: method={method!r} is not allowed; use 'REML' or 'ML'")
    parsed = parse_formula(formula)
    frame = to_polars(data, name="data")
    _check_data(parsed, frame)
    pdf = frame.to_pandas()
    y_df, x_df = _patsy(parsed.fixed_formula, pdf, "fixed part", lhs=True)
    if y_df.shape[1] != 1:
        raise FormulaError(
            f"formula {formula!r}: the response {parsed.response!r} must be one numeric column "
            f"(got {y_df.shape[1]} columns {list(y_df.columns)}); recode it as numbers"
        )
    y = np.asarray(y_df, dtype=float).ravel()
    warn_binary_gaussian(y, formula)
    x = np.asarray(x_df, dtype=float)
    names = [_clean(c) for c in x_df.columns]
    if np.linalg.matrix_rank(x) < x.shape[1]:
        raise FormulaError(
            f"formula {formula!r}: the fixed-effect design is rank deficient (columns {names}); "
            "drop collinear or empty terms"
        )
    terms = _evaluate_terms(parsed, frame, pdf)
    if len(y) > DIRECT_ROWS:  # statsmodels' dense per-group algebra is too slow here
        _plan(terms, formula)  # the same model checks as the statsmodels path
        fit, sm_warnings = None, []
    else:
        fit, sm_warnings = _fit_statsmodels(terms, y, x, meth == "REML", formula)
    out = _assemble(parsed, meth, terms, y, x, names, fit, sm_warnings, alpha)
    out._data = frame
    out._slices = {
        _clean(k): (v.start, v.stop) for k, v in x_df.design_info.term_name_slices.items()
    }
    return out


def _fit_statsmodels(terms: list[_Term], y: np.ndarray, x: np.ndarray, reml: bool, formula: str):
    from statsmodels.regression.mixed_linear_model import MixedLM

    primary, re_index = _plan(terms, formula)
    n = len(y)
    if primary is None:
        groups = np.zeros(n, dtype=np.int64)
        exog_re = None
    else:
        groups = terms[primary].codes
        exog_re = terms[re_index].design
    vc = _vc_spec(terms, groups, re_index)
    model = MixedLM(y, x, groups, exog_re=exog_re, exog_vc=vc if vc.names else None)
    # statsmodels' optimisers fail differently near the boundary (a variance at 0): L-BFGS can
    # hit a singular matrix where BFGS succeeds. Try each alone; keep the first that converges,
    # else the best log-likelihood among those that ran.
    result, errors, tried = None, [], []
    for optimizer in ("lbfgs", "bfgs", "cg", "nm"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                candidate = model.fit(reml=reml, method=[optimizer])
            except (np.linalg.LinAlgError, ValueError) as exc:
                errors.append(f"{optimizer}: {exc}")
                continue
        notes = sorted(
            {str(w.message) for w in caught if not issubclass(w.category, FutureWarning)}
        )
        tried.append((candidate, notes))
        if candidate.converged and np.isfinite(candidate.llf):
            result = (candidate, notes)
            break
    if result is None and tried:
        result = max(tried, key=lambda r: r[0].llf if np.isfinite(r[0].llf) else -np.inf)
    if result is None:
        raise AnalysisError(
            f"mixed: statsmodels could not fit {formula!r} ({'; '.join(errors)}); check that every "
            "grouping factor has at least two levels and that the data vary within groups"
        )
    return (result[0], re_index), result[1]


def _refine(cp: CrossProducts, theta: np.ndarray, reml: bool, direct: bool = False):
    """Minimise lme4's profiled deviance from statsmodels' estimate; None if nothing is gained.

    Returns ``(theta, deviance gain)`` when the bounded L-BFGS-B search (diagonal
    Cholesky entries >= 0, as lme4) lowers the deviance by more than 1e-7 relative, or always
    with ``direct`` (the fit itself, from lme4's start; None only if it is not finite).
    """
    from scipy import optimize

    def deviance(t: np.ndarray) -> float:
        try:
            return cp.evaluate(t, None, reml)["deviance"]
        except np.linalg.LinAlgError:
            return np.inf

    bounds = []
    for b in cp.blocks:
        r, c = np.tril_indices(b.k)
        bounds.extend((0.0, None) if i == j else (None, None) for i, j in zip(r, c, strict=True))
    start = np.array(
        [max(v, 0.0) if lo == 0.0 else v for v, (lo, _) in zip(theta, bounds, strict=True)]
    )
    dev0 = deviance(theta)
    res = optimize.minimize(deviance, start, method="L-BFGS-B", bounds=bounds)
    gain = dev0 - float(res.fun)
    if direct and np.isfinite(res.fun):
        # restart with tolerances absolute in effect: the deviance of 50,000 rows is ~1e5, and
        # the default relative ftol would stop 1e-4 short
        # and with central-difference gradients (forward differences of a 1e5 deviance with
        # steps of 1e-8 carry rounding errors of 1e-3)
        tight = {"ftol": 1e-15, "gtol": 1e-7}

        def gradient(t: np.ndarray) -> np.ndarray:
            out = np.empty(len(t))
            for i in range(len(t)):
                h = 1e-5 * max(1.0, abs(t[i]))
                up, down = t.copy(), t.copy()
                up[i] += h
                down[i] = max(down[i] - h, 0.0) if bounds[i][0] == 0.0 else down[i] - h
                out[i] = (deviance(up) - deviance(down)) / (up[i] - down[i])
            return out

        again = optimize.minimize(
            deviance, res.x, jac=gradient, method="L-BFGS-B", bounds=bounds, options=tight
        )
        return (again.x if again.fun <= res.fun else res.x), gain
    if not np.isfinite(res.fun) or gain <= 1e-7 * max(1.0, abs(dev0)):
        return None
    return res.x, gain


def _start(cp: CrossProducts, terms: list[_Term], fit) -> np.ndarray:
    """theta of statsmodels' fit, or lme4's start (identity factors) without one."""
    if fit is None:
        return np.concatenate([np.eye(b.k)[np.tril_indices(b.k)] for b in cp.blocks]).astype(float)
    result, re_index = fit
    scale = float(result.scale)
    # relative covariance of each term, in term order (same blocks as the Z we build)
    relative: list[np.ndarray] = []
    vc_values = dict(zip(result.model.exog_vc.names, np.atleast_1d(result.vcomp), strict=True))
    for i, t in enumerate(terms):
        if i == re_index:
            relative.append(np.asarray(result.cov_re, dtype=float) / scale)
        else:
            diag = [vc_values[f"{t.spec.group_name}|{c}"] for c in t.names]
            relative.append(np.diag(np.asarray(diag, dtype=float)) / scale)
    return cp.theta_from_covariances(relative)


def _assemble(parsed, meth, terms, y, x, names, fit, sm_warnings, alpha) -> MixedResult:
    reml = meth == "REML"
    blocks = [Block(t.spec.group_name, t.names, t.codes, len(t.levels), t.design) for t in terms]
    cp = CrossProducts.build(y, x, blocks)
    theta = _start(cp, terms, fit)
    refined = _refine(cp, theta, reml, direct=fit is None)
    if fit is None:  # lme4's algorithm from its start: the optimum is the fit, not a refinement
        if refined is None:
            raise AnalysisError(f"mixed: the profiled deviance of {parsed.text!r} is not finite")
        theta, _ = refined
        refined = None
    if refined is not None:  # statsmodels stopped short of the optimum (boundary fits)
        theta, gain = refined
        # statsmodels' messages described the optimum that was just replaced: report the final
        # fit only (its boundary, if any)
        sm_warnings = [
            f"statsmodels' optimum refined on lme4's profiled deviance (lower by {gain:.3g})"
        ]
        diagonal = np.concatenate(
            [np.tril_indices(b.k)[0] == np.tril_indices(b.k)[1] for b in blocks]
        )
        if np.any(theta[diagonal] < 1e-4):
            sm_warnings.append(
                "boundary (singular) fit: a random-effect variance is estimated at (nearly) 0"
            )
    # beta, sigma and the log-likelihood follow from theta (profiled, as in lme4); statsmodels'
    # own scale can be off at boundary fits
    ev = cp.evaluate(theta, None, reml)
    beta, scale, loglik = ev["beta"], float(ev["sigma"]) ** 2, -0.5 * float(ev["deviance"])
    sigma = float(np.sqrt(scale))
    satt = satterthwaite(cp, theta, sigma, reml)
    rows = []
    for j, name in enumerate(names):
        ell = np.zeros(len(names))
        ell[j] = 1.0
        row = _test_row(satt, ell, float(beta[j]), alpha)
        rows.append({"term": name, **row})
    fixed = pl.DataFrame(rows, schema=_FIXED_SCHEMA)

    covs = cp.covariances(theta)
    rand_rows, corr_rows = [], []
    for t, cov in zip(terms, covs, strict=True):
        absolute = cov * scale
        sds = np.sqrt(np.clip(np.diag(absolute), 0.0, None))
        for k, name in enumerate(t.names):
            rand_rows.append(
                {
                    "group": t.spec.group_name,
                    "term": name,
                    "variance": float(absolute[k, k]),
                    "sd": float(sds[k]),
                }
            )
        for a in range(len(t.names)):
            for b in range(a + 1, len(t.names)):
                denom = sds[a] * sds[b]
                corr_rows.append(
                    {
                        "group": t.spec.group_name,
                        "term_a": t.names[a],
                        "term_b": t.names[b],
                        "corr": float(absolute[a, b] / denom) if denom > 0 else float("nan"),
                    }
                )
    rand_rows.append({"group": "Residual", "term": None, "variance": scale, "sd": sigma})
    random = pl.DataFrame(
        rand_rows,
        schema={"group": pl.String, "term": pl.String, "variance": pl.Float64, "sd": pl.Float64},
    )
    correlations = pl.DataFrame(
        corr_rows,
        schema={"group": pl.String, "term_a": pl.String, "term_b": pl.String, "corr": pl.Float64},
    )
    result = fit[0] if fit is not None else None
    converged = (result is None or bool(result.converged)) and satt.hessian_ok
    n_levels = {t.spec.group_name: len(t.levels) for t in terms}
    n_par = len(names) + cp.n_theta + 1
    return MixedResult(
        formula=parsed.text,
        method=meth,
        fixed=fixed,
        random=random,
        correlations=correlations,
        sigma=sigma,
        loglik=loglik,
        converged=converged,
        n_obs=len(y),
        n_levels=n_levels,
        warnings=sm_warnings,
        statsmodels_result=result,
        _satt=satt,
        _names=names,
        _beta=beta,
        _n_par=n_par,
        _cp=cp,
        _theta=theta,
        _levels=[t.levels for t in terms],
        _x=x,
    )
