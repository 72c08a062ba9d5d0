"""How far apart two sets of images are, measured on feature vectors: MMD and Fréchet distance.

A model's score on another cohort (generated samples, an external hospital) can only be read
against the size of the shift between that cohort and the data the score was first measured on.
These functions take two feature arrays (one row per image: e.g. the penultimate-layer activations
of the trained network, or the voxels of small images) and return the distance with a permutation
p-value of "both arrays come from the same distribution".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from raybench_analysis._frames import AnalysisError, require_columns, to_polars

__all__ = ["DISTANCES", "feature_distance", "feature_shift", "frechet_distance", "mmd2"]

#: The distances of :func:`feature_distance`.
DISTANCES: tuple[str, ...] = ("mmd", "frechet")

#: pooled samples × permutations processed at once by the vectorised MMD permutations
_CHUNK_CELLS = 4_000_000


def _as_features(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] < 2:
        raise AnalysisError(
            f"{name}: expected a 2-D array of features (one row per image, at least 2 rows), "
            f"got shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise AnalysisError(f"{name}: features hold NaN or infinite values")
    return arr


def _sq_dists(z: np.ndarray) -> np.ndarray:
    sq = np.sum(z * z, axis=1)
    return np.maximum(sq[:, None] + sq[None, :] - 2.0 * z @ z.T, 0.0)


def median_bandwidth(a: np.ndarray, b: np.ndarray) -> float:
    """The median heuristic: the median distance between distinct pooled points (Gretton et al.
    2012, §8), the usual default width of the Gaussian kernel."""
    d = _sq_dists(np.vstack([a, b]))
    off = d[np.triu_indices_from(d, k=1)]
    med = float(np.sqrt(np.median(off))) if off.size else 0.0
    return med if med > 0 else 1.0


def _mmd2_from_kernel(k: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Unbiased MMD² for each row of ``labels`` (True: first sample), from the pooled kernel."""
    n = k.shape[0]
    diag = np.diag(k)
    lab = labels.astype(float)
    other = 1.0 - lab
    kx = lab @ k  # (P, n)
    s_xx = np.sum(kx * lab, axis=1) - lab @ diag
    s_xy = np.sum(kx * other, axis=1)
    s_yy = np.sum((other @ k) * other, axis=1) - other @ diag
    m = lab.sum(axis=1)
    q = n - m
    return s_xx / (m * (m - 1)) + s_yy / (q * (q - 1)) - 2.0 * s_xy / (m * q)


def mmd2(a: Any, b: Any, bandwidth: float | None = None) -> float:
    """Unbiased squared maximum mean discrepancy with a Gaussian kernel (Gretton et al. 2012).

    ``MMD²_u = 1/(m(m−1)) Σ_{i≠j} k(a_i, a_j) + 1/(n(n−1)) Σ_{i≠j} k(b_i, b_j)
    − 2/(mn) Σ_{i,j} k(a_i, b_j)`` with ``k(x, y) = exp(−‖x − y‖² / (2 σ²))``, ``σ`` the
    ``bandwidth`` (default: the median heuristic). It is 0 in expectation when both samples come
    from one distribution and can be slightly negative.

    Two identical samples {0, 1}: ``2 e^{-1/2} − 2 (2 + 2 e^{-1/2}) / 4 = e^{-1/2} − 1``:

    >>> round(mmd2([[0.0], [1.0]], [[0.0], [1.0]], bandwidth=1.0), 6)
    -0.393469
    """
    x, y = _as_features(a, "a"), _as_features(b, "b")
    sigma = median_bandwidth(x, y) if bandwidth is None else float(bandwidth)
    k = np.exp(-_sq_dists(np.vstack([x, y])) / (2.0 * sigma**2))
    labels = np.zeros((1, len(x) + len(y)), dtype=bool)
    labels[0, : len(x)] = True
    return float(_mmd2_from_kernel(k, labels)[0])


def _sqrtm_psd(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((c + c.T) / 2.0)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(a: Any, b: Any) -> float:
    """Fréchet (2-Wasserstein) distance between Gaussians fitted to two feature samples.

    ``d² = ‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2 (Σ_a^{1/2} Σ_b Σ_a^{1/2})^{1/2})`` (Dowson & Landau
    1982), the quantity behind the Fréchet Inception Distance (Heusel et al. 2017). The trace of
    the matrix square root is computed from the eigenvalues of the symmetric
    ``Σ_a^{1/2} Σ_b Σ_a^{1/2}``, which is stable where ``sqrtm(Σ_a Σ_b)`` is not.

    >>> frechet_distance([[0.0], [2.0]], [[3.0], [5.0]])  # means 1 and 4, equal spreads
    9.0
    """
    x, y = _as_features(a, "a"), _as_features(b, "b")
    if x.shape[1] != y.shape[1]:
        raise AnalysisError(f"a has {x.shape[1]} features and b {y.shape[1]}; they must match")
    return _frechet(x, y)


def _frechet(x: np.ndarray, y: np.ndarray) -> float:
    mu = x.mean(axis=0) - y.mean(axis=0)
    cx = np.atleast_2d(np.cov(x, rowvar=False))
    cy = np.atleast_2d(np.cov(y, rowvar=False))
    root = _sqrtm_psd(cx)
    cross = np.linalg.eigvalsh(root @ cy @ root)
    value = float(
        mu @ mu + np.trace(cx) + np.trace(cy) - 2.0 * np.sum(np.sqrt(np.clip(cross, 0, None)))
    )
    return max(value, 0.0)


def _span(pooled: np.ndarray) -> np.ndarray:
    """``pooled`` in coordinates of the affine span of its rows, when that has fewer dimensions.

    Both distances are invariant under translation and rotation, and every mean and covariance
    of a subset of the rows (any relabelling) lies in that span, so the projection changes no
    estimate and no permuted value: it only makes the Fréchet distance of 1024 penultimate
    features of a few dozen images cost a few dozen dimensions.
    """
    n, d = pooled.shape
    if d < n:
        return pooled
    centred = pooled - pooled.mean(axis=0)
    u, sv, _ = np.linalg.svd(centred, full_matrices=False)
    keep = sv > sv.max(initial=0.0) * 1e-10
    return u[:, keep] * sv[keep]


def feature_distance(
    a: Any,
    b: Any,
    distances: Sequence[str] = DISTANCES,
    *,
    n_perm: int = 1000,
    seed: int = 0,
    bandwidth: float | None = None,
) -> pl.DataFrame:
    """Distances between two feature samples, each with a permutation p-value of "no shift".

    Parameters
    ----------
    a, b:
        Feature arrays, one row per image (``(n_a, d)`` and ``(n_b, d)``): e.g. the trained
        network's penultimate-layer activations on the real test images and on generated ones.
    distances:
        Any of ``"mmd"`` (unbiased MMD² with a Gaussian kernel) and ``"frechet"`` (Fréchet
        distance of fitted Gaussians).
    n_perm:
        Random relabellings of the pooled rows for the p-value (0: no p-value).
    seed:
        Seed of the permutations (numpy PCG64).
    bandwidth:
        Gaussian kernel width of the MMD; default the median heuristic on the pooled rows.

    Returns
    -------
    polars.DataFrame
        One row per distance: ``distance``, ``estimate``, ``p_value`` (NaN without
        permutations), ``n_a``, ``n_b``, ``n_features``, ``n_perm``, ``bandwidth`` (NaN for the
        Fréchet distance), ``method``.

    Notes
    -----
    Under the null hypothesis that both samples come from one distribution the rows are
    exchangeable, so the distance after randomly relabelling the pooled rows (keeping the sample
    sizes) has the null distribution of the observed one, and
    ``p = (1 + #{perm ≥ observed}) / (1 + n_perm)`` is a valid p-value (Gretton et al. 2012, §5;
    Phipson & Smyth 2010 for the +1). The bandwidth is fixed from the pooled data before
    permuting, which keeps the test exact. The features must be computed by a function fixed
    before seeing the test (the trained network is): the test is then about the images.

    References
    ----------
    Gretton, A., Borgwardt, K. M., Rasch, M. J., Schölkopf, B., & Smola, A. (2012). A kernel
    two-sample test. Journal of Machine Learning Research, 13, 723–773.

    Dowson, D. C., & Landau, B. V. (1982). The Fréchet distance between multivariate normal
    distributions. Journal of Multivariate Analysis, 12(3), 450–455.

    Heusel, M., Ramsauer, H., Unterthiner, T., Nessler, B., & Hochreiter, S. (2017). GANs trained
    by a two time-scale update rule converge to a local Nash equilibrium. Advances in Neural
    Information Processing Systems 30.

    Phipson, B., & Smyth, G. K. (2010). Permutation p-values should never be zero. Statistical
    Applications in Genetics and Molecular Biology, 9(1), Article 39.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> out = feature_distance(rng.normal(size=(40, 3)), rng.normal(1.0, 1.0, size=(40, 3)),
    ...                        n_perm=200)
    >>> out.select("distance", "n_a", "n_perm").rows()
    [('mmd', 40, 200), ('frechet', 40, 200)]
    >>> bool((out["p_value"] < 0.05).all())
    True
    """
    x, y = _as_features(a, "a"), _as_features(b, "b")
    if x.shape[1] != y.shape[1]:
        raise AnalysisError(f"a has {x.shape[1]} features and b {y.shape[1]}; they must match")
    unknown = [d for d in distances if d not in DISTANCES]
    if unknown or not distances:
        raise AnalysisError(f"distances={list(distances)!r}; allowed: {list(DISTANCES)}")
    if not isinstance(n_perm, int) or n_perm < 0:
        raise AnalysisError(f"n_perm={n_perm!r} must be an integer >= 0")
    if bandwidth is not None and not (math.isfinite(bandwidth) and bandwidth > 0):
        raise AnalysisError(f"bandwidth={bandwidth!r} must be a finite number > 0")
    d = x.shape[1]
    pooled = _span(np.vstack([x, y]))
    n, m = len(pooled), len(x)
    x, y = pooled[:m], pooled[m:]
    rng = np.random.default_rng(seed)
    perms = np.zeros((n_perm, n), dtype=bool)
    for i in range(n_perm):
        perms[i, rng.permutation(n)[:m]] = True
    rows = []
    for name in distances:
        sigma = math.nan
        if name == "mmd":
            sigma = median_bandwidth(x, y) if bandwidth is None else float(bandwidth)
            k = np.exp(-_sq_dists(pooled) / (2.0 * sigma**2))
            observed = np.zeros((1, n), dtype=bool)
            observed[0, :m] = True
            est = float(_mmd2_from_kernel(k, observed)[0])
            step = max(1, _CHUNK_CELLS // max(n, 1))
            null = np.concatenate(
                [_mmd2_from_kernel(k, perms[i : i + step]) for i in range(0, n_perm, step)]
                or [np.empty(0)]
            )
            method = "unbiased MMD² (Gaussian kernel), permutation test"
        else:
            est = _frechet(x, y)
            null = np.array([_frechet(pooled[p], pooled[~p]) for p in perms])
            method = "Fréchet distance of fitted Gaussians, permutation test"
        p = float((1 + np.sum(null >= est)) / (1 + n_perm)) if n_perm else math.nan
        rows.append(
            {
                "distance": name,
                "estimate": est,
                "p_value": p,
                "n_a": len(x),
                "n_b": len(y),
                "n_features": d,
                "n_perm": n_perm,
                "bandwidth": sigma,
                "method": method,
            }
        )
    return pl.DataFrame(rows)


def _halves(labels: list[str], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of two halves, each class split in two (a class's odd row goes to the first)."""
    first, second = [], []
    for c in sorted(set(labels)):
        rows = rng.permutation([i for i, v in enumerate(labels) if v == c])
        cut = (len(rows) + 1) // 2
        first += rows[:cut].tolist()
        second += rows[cut:].tolist()
    return np.array(sorted(first), dtype=int), np.array(sorted(second), dtype=int)


def _like(labels: list[str], pool: list[str], rng: np.random.Generator) -> np.ndarray | None:
    """Rows of ``pool`` with the class counts of ``labels``, drawn without replacement; None
    when ``pool`` holds too few of a class."""
    out = []
    for c in sorted(set(labels)):
        rows = [i for i, v in enumerate(pool) if v == c]
        need = labels.count(c)
        if len(rows) < need:
            return None
        out += rng.choice(rows, size=need, replace=False).tolist()
    return np.array(sorted(out), dtype=int)


def feature_shift(
    features: Any,
    distances: Sequence[str] = DISTANCES,
    *,
    n_perm: int = 1000,
    seed: int = 0,
) -> pl.DataFrame:
    """Distance between generated and real test images, next to its "no shift" yardstick.

    For each network scored on a generated dataset (one ``trial_id`` of the ``features`` table,
    docs/results.md): its real test images (``origin = test``) are split in two halves A and B,
    each class in two (seeded); then

    - ``halves``: the distance between A and B, the value of "no shift" at this sample size;
    - ``generated``: the distance between A and as many generated samples as B holds, of B's
      class counts (drawn without replacement).

    Both are :func:`feature_distance` on the network's penultimate features with equal sample
    sizes, so they are on one scale (both statistics depend on the sample size); each has its
    permutation p-value of "same distribution" (Gretton et al. 2012; Phipson & Smyth 2010).

    Parameters
    ----------
    features:
        The ``features`` table (polars or pandas frame, or a LazyFrame), or loaded results.
    distances, n_perm, seed:
        As :func:`feature_distance` (``seed`` also draws the halves and the generated rows).

    Returns
    -------
    polars.DataFrame
        One row per (generated dataset, network, distance): ``dataset``, ``development`` (the
        real dataset), ``model``, ``seed``, ``refit_trial_id``, ``distance``, ``halves``,
        ``halves_p``, ``generated``, ``generated_p``, ``n_half`` (images per compared sample),
        ``n_features``. Empty when no network has at least 4 real test images and enough
        generated ones.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> def rows(origin, shift, n):
    ...     return [{"trial_id": "e", "refit_trial_id": "r", "model": "cnn", "seed": 0,
    ...              "dataset": "synth" if origin == "test" else "gen", "origin": origin,
    ...              "sample_id": f"{origin}{i:03d}",
    ...              "label": "AD" if i % 2 else "CN",
    ...              "features": (rng.normal(size=4) + shift).tolist()} for i in range(n)]
    >>> out = feature_shift(pl.DataFrame(rows("test", 0, 40) + rows("generated", 2, 40)),
    ...                     n_perm=200)
    >>> out.select("dataset", "development", "distance", "n_half").rows()
    [('gen', 'synth', 'mmd', 20), ('gen', 'synth', 'frechet', 20)]
    >>> bool((out["halves"] < out["generated"]).all() and (out["generated_p"] < 0.05).all())
    True
    """
    frame = getattr(features, "features", features)
    if isinstance(frame, pl.LazyFrame):
        frame = frame.collect()
    frame = to_polars(frame, name="features")
    require_columns(
        frame, ["trial_id", "origin", "dataset", "sample_id", "label", "features"], name="features",
        why="for the feature shift",
    )  # fmt: skip
    keys = ("model", "seed", "refit_trial_id")
    rows: list[dict[str, Any]] = []
    ordered = frame.sort("trial_id", "origin", "sample_id")
    for (entry,), part in ordered.group_by("trial_id", maintain_order=True):
        real = part.filter(pl.col("origin") == "test")
        gen = part.filter(pl.col("origin") == "generated")
        if real.height < 4 or gen.height < 2:
            continue
        rng = np.random.default_rng([seed, len(rows)])
        r_lab = real["label"].cast(pl.String).fill_null("").to_list()
        a, b = _halves(r_lab, rng)
        pick = _like([r_lab[i] for i in b], gen["label"].cast(pl.String).fill_null("").to_list(),
                     rng)  # fmt: skip
        if pick is None or len(a) < 2 or len(b) < 2:
            continue
        x = np.array(real["features"].to_list(), dtype=float)
        g = np.array(gen["features"].to_list(), dtype=float)
        args = {"distances": distances, "n_perm": n_perm, "seed": seed}
        halves = feature_distance(x[a], x[b], **args)
        shift = feature_distance(x[a], g[pick], **args)
        first = part.row(0, named=True)
        for h, s in zip(halves.iter_rows(named=True), shift.iter_rows(named=True), strict=True):
            rows.append(
                {
                    "dataset": gen["dataset"][0],
                    "development": real["dataset"][0],
                    **{k: first.get(k) for k in keys},
                    "distance": h["distance"],
                    "halves": h["estimate"],
                    "halves_p": h["p_value"],
                    "generated": s["estimate"],
                    "generated_p": s["p_value"],
                    "n_half": len(b),
                    "n_features": x.shape[1],
                    "trial_id": entry,
                }
            )
    schema = {"dataset": pl.String, "development": pl.String, "model": pl.String,
              "seed": pl.Int64, "refit_trial_id": pl.String, "distance": pl.String,
              "halves": pl.Float64, "halves_p": pl.Float64, "generated": pl.Float64,
              "generated_p": pl.Float64, "n_half": pl.Int64, "n_features": pl.Int64,
              "trial_id": pl.String}  # fmt: skip
    order = {name: i for i, name in enumerate(distances)}
    out = pl.DataFrame(rows, schema=schema)
    return out.sort(
        "dataset", "model", "seed", pl.col("distance").replace_strict(order), maintain_order=True
    )
