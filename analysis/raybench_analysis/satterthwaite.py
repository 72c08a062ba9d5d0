"""The (RE)ML deviance of a linear mixed model and Satterthwaite degrees of freedom.

statsmodels' ``MixedLM`` fits the model; this module re-expresses the fitted model in lme4's
parameterisation (relative Cholesky factors ``theta`` and the residual SD ``sigma``) and evaluates
the deviance and the fixed-effect covariance ``V(theta, sigma)`` as smooth functions of those
parameters. Satterthwaite's approximation then needs the Hessian of the deviance (for the
asymptotic covariance ``A`` of the variance parameters) and the gradient of ``L V L'``; both are
taken by central finite differences, as lmerTest does with numDeriv.

Everything is computed from cross-products (``X'X``, ``Z'X``, ``Z'Z``, ...) prepared once, so one
deviance evaluation costs one factorisation of the ``q x q`` random-effects system (``q`` = number
of random coefficients), independent of the number of observations: dense Cholesky up to
``SPARSE_Q`` coefficients, a sparse LU without pivoting (a Cholesky in LDL' form for this
symmetric positive definite matrix) above, which keeps nested and crossed designs sparse.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy import stats

__all__ = ["Block", "CrossProducts", "SatterthwaiteResult", "satterthwaite"]

_LOG_2PI = float(np.log(2.0 * np.pi))

#: random coefficients above which the random-effects system is factored as a sparse matrix
SPARSE_Q = 400


@dataclass(frozen=True)
class Block:
    """One random-effect term: ``k`` correlated coefficients for each of ``n_levels`` levels.

    ``codes`` maps each observation to its level (0..n_levels-1); ``design`` (n x k) holds the
    coefficient columns (ones for an intercept, the covariate for a slope).
    """

    group: str
    terms: tuple[str, ...]
    codes: np.ndarray
    n_levels: int
    design: np.ndarray

    @property
    def k(self) -> int:
        """Number of correlated coefficients per level."""
        return len(self.terms)

    @property
    def n_theta(self) -> int:
        """Number of free parameters in the lower-triangular relative Cholesky factor."""
        return self.k * (self.k + 1) // 2


def random_design(blocks: list[Block], n: int) -> sp.csc_matrix:
    """The sparse random-effects design ``Z`` (n x q), level-major within each block."""
    mats = []
    for b in blocks:
        rows = np.repeat(np.arange(n), b.k)
        cols = (b.codes[:, None] * b.k + np.arange(b.k)[None, :]).ravel()
        mats.append(sp.csc_matrix((b.design.ravel(), (rows, cols)), shape=(n, b.n_levels * b.k)))
    return sp.hstack(mats, format="csc")


@dataclass
class CrossProducts:
    """Sufficient cross-products of ``y``, ``X`` and ``Z`` for deviance evaluations.

    Build with :meth:`build`; then :meth:`evaluate` gives the deviance and ``V(beta)`` at any
    ``(theta, sigma)``.
    """

    n: int
    p: int
    blocks: list[Block]
    xtx: np.ndarray
    xty: np.ndarray
    yty: float
    ztx: np.ndarray
    zty: np.ndarray
    ztz: sp.csc_matrix
    lam_rows: np.ndarray = field(repr=False)
    lam_cols: np.ndarray = field(repr=False)
    lam_index: np.ndarray = field(repr=False)

    @classmethod
    def build(cls, y: np.ndarray, x: np.ndarray, blocks: list[Block]) -> CrossProducts:
        """Prepare the cross-products and the sparsity pattern of ``Lambda(theta)``."""
        n, p = x.shape
        z = random_design(blocks, n)
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
        return cls(
            n=n,
            p=p,
            blocks=blocks,
            xtx=x.T @ x,
            xty=x.T @ y,
            yty=float(y @ y),
            ztx=np.asarray(z.T @ x),
            zty=np.asarray(z.T @ y).ravel(),
            ztz=(z.T @ z).tocsc(),
            lam_rows=np.concatenate(rows),
            lam_cols=np.concatenate(cols),
            lam_index=np.concatenate(index),
        )

    @property
    def q(self) -> int:
        """Total number of random coefficients."""
        return self.ztz.shape[0]

    @property
    def n_theta(self) -> int:
        """Number of relative covariance parameters (without sigma)."""
        return sum(b.n_theta for b in self.blocks)

    def theta_from_covariances(self, relative: list[np.ndarray]) -> np.ndarray:
        """Lower-triangular Cholesky entries of each block's covariance divided by sigma^2.

        Singular (boundary) covariance matrices are factored through their eigen-decomposition,
        giving the lower-triangular factor of the nearest positive semi-definite matrix.
        """
        theta = []
        for b, cov in zip(self.blocks, relative, strict=True):
            cov = np.atleast_2d(np.asarray(cov, dtype=float))
            try:
                chol = np.linalg.cholesky(cov)
            except np.linalg.LinAlgError:
                w, v = np.linalg.eigh((cov + cov.T) / 2.0)
                half = v * np.sqrt(np.clip(w, 0.0, None))
                _, r = np.linalg.qr(half.T)
                chol = r.T * np.sign(np.where(np.diag(r) == 0, 1.0, np.diag(r)))
            theta.append(chol[np.tril_indices(b.k)])
        return np.concatenate(theta)

    def covariances(self, theta: np.ndarray) -> list[np.ndarray]:
        """Relative covariance ``T T'`` of each block for a ``theta`` vector."""
        out, off = [], 0
        for b in self.blocks:
            t = np.zeros((b.k, b.k))
            t[np.tril_indices(b.k)] = theta[off : off + b.n_theta]
            out.append(t @ t.T)
            off += b.n_theta
        return out

    def evaluate(self, theta: np.ndarray, sigma: float | None, reml: bool) -> dict[str, object]:
        """Deviance (-2 log-likelihood) and fixed-effect quantities at ``(theta, sigma)``.

        With ``sigma=None`` the residual SD is profiled out (its (RE)ML estimate given theta).
        Returns a dict with ``deviance``, ``beta``, ``vcov`` (covariance of beta), ``sigma``.
        """
        q = self.q
        lam = sp.csc_matrix((theta[self.lam_index], (self.lam_rows, self.lam_cols)), shape=(q, q))
        rhs = lam.T @ np.column_stack([self.ztx, self.zty])
        if q <= SPARSE_Q:
            a = (lam.T @ self.ztz @ lam).toarray() + np.eye(q)
            chol = np.linalg.cholesky(a)
            sol = np.linalg.solve(chol, rhs)
            cross = sol.T @ sol  # [R_ZX, c_u]' [R_ZX, c_u]
            logdet_a = 2.0 * float(np.sum(np.log(np.diag(chol))))
        else:
            # sparse LU with a fill-reducing ordering and no pivoting (A is symmetric positive
            # definite, so this is a Cholesky in LDL' form): nested and crossed designs keep
            # their sparsity, unlike the dense q x q Cholesky
            a_sp = (lam.T @ self.ztz @ lam + sp.identity(q, format="csc")).tocsc()
            lu = spla.splu(
                a_sp,
                permc_spec="MMD_AT_PLUS_A",
                diag_pivot_thresh=0.0,
                options={"SymmetricMode": True},
            )
            diag = lu.U.diagonal()
            if np.any(diag <= 0):
                raise np.linalg.LinAlgError("random-effects system not positive definite")
            cross = rhs.T @ lu.solve(np.asarray(rhs))
            logdet_a = float(np.sum(np.log(diag)))
        rzx_rzx, rzx_cu = cross[: self.p, : self.p], cross[: self.p, self.p]
        xvx = self.xtx - rzx_rzx
        xvy = self.xty - rzx_cu
        yvy = self.yty - float(cross[self.p, self.p])
        cx = np.linalg.cholesky(xvx)
        xvx_inv = np.linalg.inv(xvx)
        beta = xvx_inv @ xvy
        rss = max(yvy - float(beta @ xvy), 0.0)
        logdet_x = 2.0 * float(np.sum(np.log(np.diag(cx))))
        dof = self.n - self.p if reml else self.n
        s2 = rss / dof if sigma is None else float(sigma) ** 2
        dev = dof * (_LOG_2PI + np.log(s2)) + logdet_a + rss / s2
        if reml:
            dev += logdet_x
        vcov = s2 * xvx_inv
        return {"deviance": float(dev), "beta": beta, "vcov": vcov, "sigma": float(np.sqrt(s2))}


@dataclass
class SatterthwaiteResult:
    """What a Satterthwaite test needs: ``V``, its Jacobian and ``A`` at the estimates."""

    varpar: np.ndarray
    vcov: np.ndarray
    jacobian: np.ndarray  # (n_varpar, p, p): dV/dvarpar_k
    a: np.ndarray  # asymptotic covariance of varpar = 2 * inverse Hessian of the deviance
    hessian_ok: bool

    def df(self, contrast: np.ndarray) -> float:
        """Satterthwaite denominator df of one contrast row ``L``: 2 (LVL')^2 / (g'Ag)."""
        ell = np.asarray(contrast, dtype=float)
        var = float(ell @ self.vcov @ ell)
        grad = np.einsum("i,kij,j->k", ell, self.jacobian, ell)
        denom = float(grad @ self.a @ grad)
        if not np.isfinite(denom) or denom <= 0.0:
            return float("inf")
        return 2.0 * var**2 / denom

    def test(self, contrast: np.ndarray, estimate: float) -> dict[str, float]:
        """t-test of one contrast: estimate, std_error, df, statistic, two-sided p_value."""
        ell = np.asarray(contrast, dtype=float)
        se = float(np.sqrt(ell @ self.vcov @ ell))
        df = self.df(ell)
        t = estimate / se if se > 0 else float("nan")
        p = float(2.0 * stats.t.sf(abs(t), df)) if np.isfinite(t) else float("nan")
        return {"estimate": estimate, "std_error": se, "df": df, "statistic": t, "p_value": p}

    def ftest(self, contrasts: np.ndarray, estimate: np.ndarray) -> dict[str, float]:
        """F-test of ``L beta = 0`` for a ``(q, p)`` matrix ``L`` with Satterthwaite's df.

        Returns num_df, den_df, statistic (F) and p_value. As lmerTest (Kuznetsova et al. 2017,
        §3.3): ``L V L' = P D P'``; each row ``P_m' L`` gets its own df ``nu_m`` and, with
        ``E = sum nu_m/(nu_m - 2)``, the denominator df is ``2E/(E - q)`` (2 when some
        ``nu_m <= 2``; their common value when all ``nu_m`` are equal).
        """
        ell = np.atleast_2d(np.asarray(contrasts, dtype=float))
        lvl = ell @ self.vcov @ ell.T
        d, pmat = np.linalg.eigh((lvl + lvl.T) / 2.0)
        keep = d > 1e-8 * max(float(d.max()), 0.0)
        d, pmat = d[keep], pmat[:, keep]
        rows = pmat.T @ ell
        q = len(d)
        proj = rows @ np.asarray(estimate, dtype=float)
        f = float(np.sum(proj**2 / d) / q)
        nu = np.array([self.df(r) for r in rows])
        if q == 1:
            den = float(nu[0])
        elif np.all(np.abs(np.diff(nu)) < 1e-8):
            den = float(nu.mean())
        elif np.any(nu <= 2):
            den = 2.0
        else:
            e = float(np.sum(nu / (nu - 2.0)))
            den = 2.0 * e / (e - q)
        return {
            "num_df": float(q),
            "den_df": den,
            "statistic": f,
            "p_value": float(stats.f.sf(f, q, den)),
        }


def _steps(x: np.ndarray) -> np.ndarray:
    """Finite-difference steps: 0.3% of each parameter, at least 3e-4 (theta may be 0)."""
    return 3e-3 * np.maximum(np.abs(x), 0.1)


def _hessian_at(f, x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Central-difference Hessian of a scalar function with steps ``h`` (O(h^2) error)."""
    m = len(x)
    f0 = f(x)
    hess = np.zeros((m, m))
    for i in range(m):
        ei = np.zeros(m)
        ei[i] = h[i]
        hess[i, i] = (f(x + ei) - 2.0 * f0 + f(x - ei)) / h[i] ** 2
        for j in range(i):
            ej = np.zeros(m)
            ej[j] = h[j]
            val = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (
                4.0 * h[i] * h[j]
            )
            hess[i, j] = hess[j, i] = val
    return hess


def _jacobian_at(f, x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Central-difference derivatives of an array-valued function, stacked on axis 0."""
    out = []
    for k in range(len(x)):
        e = np.zeros(len(x))
        e[k] = h[k]
        out.append((f(x + e) - f(x - e)) / (2.0 * h[k]))
    return np.stack(out)


def _richardson(diff, f, x: np.ndarray) -> np.ndarray:
    """One Richardson extrapolation of a central difference: (4 D(h/2) - D(h)) / 3, O(h^4)."""
    h = _steps(x)
    return (4.0 * diff(f, x, h / 2.0) - diff(f, x, h)) / 3.0


def satterthwaite(cp: CrossProducts, theta: np.ndarray, sigma: float, reml: bool):
    """Prepare Satterthwaite's approximation at the fitted ``(theta, sigma)``.

    Parameters
    ----------
    cp : CrossProducts
        The model's cross-products.
    theta, sigma : the fitted relative Cholesky parameters and residual SD.
    reml : whether the fit (and hence the deviance) is REML.

    Returns
    -------
    SatterthwaiteResult

    Notes
    -----
    With ``varpar = (theta, sigma)``, ``A = 2 H^{-1}`` where ``H`` is the Hessian of the deviance
    at the estimates, and for a contrast ``L`` the denominator degrees of freedom are
    ``nu = 2 (L V L')^2 / (g' A g)`` with ``g = d(L V L')/d varpar`` (Kuznetsova et al. 2017,
    eq. 5; Satterthwaite 1946). ``nu`` is invariant to smooth re-parameterisations of the variance
    parameters at an interior optimum; lme4's ``(theta, sigma)`` is used so that a variance
    estimated at zero (``theta = 0``) stays differentiable.

    References
    ----------
    Satterthwaite, F. E. (1946). An approximate distribution of estimates of variance components.
    *Biometrics Bulletin*, 2(6), 110–114.
    Kuznetsova, A., Brockhoff, P. B. & Christensen, R. H. B. (2017). lmerTest package: tests in
    linear mixed effects models. *Journal of Statistical Software*, 82(13), 1–26.
    """
    varpar = np.concatenate([np.asarray(theta, dtype=float), [float(sigma)]])
    nt = len(theta)

    def deviance(v: np.ndarray) -> float:
        return cp.evaluate(v[:nt], abs(v[nt]), reml)["deviance"]

    def vcov(v: np.ndarray) -> np.ndarray:
        return cp.evaluate(v[:nt], abs(v[nt]), reml)["vcov"]

    hess = _richardson(_hessian_at, deviance, varpar)
    jac = _richardson(_jacobian_at, vcov, varpar)
    w = np.linalg.eigvalsh((hess + hess.T) / 2.0)
    ok = bool(np.all(w > 0))
    a = 2.0 * (np.linalg.inv(hess) if ok else np.linalg.pinv(hess))
    return SatterthwaiteResult(varpar=varpar, vcov=vcov(varpar), jacobian=jac, a=a, hessian_ok=ok)
