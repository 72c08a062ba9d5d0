"""Simulated results of a suite with ``validation.train_resampling``, with a known learning curve.

The test bed of :mod:`raybench_analysis.learning_curve` and
:func:`raybench_analysis.sampling_variance`. Subject ``j`` of site ``s`` has a label
``y_j ~ Bernoulli(1/2)``; the model trained on draw ``r`` of ``n`` subjects of outer fold ``f``
with seed ``t`` scores the subject's image

    z = d·y_j + u_s + v_j + e,    d = √2 · Φ⁻¹(AUC_frt),
    AUC_frt = a − b·n^(−c) + δ_fr + ε_frt,   δ_fr ~ N(0, (τ/√n)²),  ε_frt ~ N(0, seed_sd²)

with site shift ``u_s ~ N(0, site_sd²)``, a subject's difficulty ``v_j`` shared by every trial
and noise ``e`` fresh in each trial (``Var(v_j + e) = 1``, ``Var(e) = trial_noise_sd²``): for
binormal scores with unit variances the population AUC is ``Φ(d/√2)`` (Hanley 1988), so the
population learning curve is the inverse power law ``a − b·n^(−c)`` exactly (up to the site
shift, which lowers a pooled AUC a little), and the sampling variance of the training draws is
``τ²/n``: it shrinks with more subjects. The whole fold (``train_resample`` null) is the
fraction-1 point.

References
----------
Hanley, J. A. (1988). The robustness of the "binormal" assumptions used in fitting ROC curves.
*Medical Decision Making*, 8(3), 197–203.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy import special, stats

from raybench_analysis._frames import AnalysisError

__all__ = ["simulate_learning_curve"]


def simulate_learning_curve(
    *,
    a: float = 0.9,
    b: float = 1.2,
    c: float = 0.5,
    n_pool: int = 160,
    fractions: Sequence[float] = (0.125, 0.25, 0.5, 1.0),
    repeats: int = 3,
    n_folds: int = 3,
    n_seeds: int = 2,
    n_sites: int = 4,
    subjects_per_site: int = 30,
    draw_sd: float = 0.2,
    seed_sd: float = 0.005,
    site_sd: float = 0.2,
    trial_noise_sd: float = 0.2,
    seed: int = 0,
) -> pl.DataFrame:
    """Clean test predictions of a subsampling learning-curve suite with a known true curve.

    Parameters
    ----------
    a, b, c : the true curve ``AUC(n) = a − b·n^(−c)`` (0.5 < AUC < 1 at every size drawn).
    n_pool : training subjects of each outer fold (a fraction ``f`` draws ``round(f·n_pool)``).
    fractions, repeats : as ``validation.train_resampling`` (fraction 1: the whole fold only).
    n_folds, n_seeds : outer folds (the test subjects are split between them) and seeds.
    n_sites, subjects_per_site : the test subjects (one image each).
    draw_sd : ``τ``; the AUC of a draw of ``n`` subjects varies with SD ``τ/√n``.
    seed_sd, site_sd : SD of the seed's effect on the AUC and of the site shift of the scores.
    trial_noise_sd : SD of the score noise fresh in each trial (at most 1; the rest of the unit
        noise variance is the subject's, shared by all trials).
    seed : numpy generator seed.

    Returns
    -------
    polars.DataFrame
        The ``predictions`` columns a learning curve reads: ``trial_id``, ``dataset``,
        ``model``, ``outer_fold``, ``seed``, ``train_fraction``, ``train_resample``,
        ``n_train_subjects``, ``sample_id``, ``subject_id``, ``site``, ``split``,
        ``perturbation``, ``y_true``, ``y_pred``, ``score``, and ``true_auc`` (the trial's
        population AUC).

    Examples
    --------
    >>> p = simulate_learning_curve(seed=1)
    >>> sorted(p["train_fraction"].unique().to_list())
    [0.125, 0.25, 0.5, 1.0]
    """
    if not 0.0 <= trial_noise_sd <= 1.0:
        raise AnalysisError(
            f"simulate_learning_curve: trial_noise_sd={trial_noise_sd} not in [0, 1]"
        )
    if not all(0.0 < f <= 1.0 for f in fractions):
        raise AnalysisError(f"simulate_learning_curve: fractions={list(fractions)} not in (0, 1]")
    sizes = np.array([round(f * n_pool) for f in fractions], dtype=float)
    curve = a - b * sizes ** (-c)
    if np.any(sizes < 2) or np.any(curve <= 0.5) or np.any(curve >= 1.0):
        raise AnalysisError(
            f"simulate_learning_curve: the curve {np.round(curve, 3).tolist()} at sizes "
            f"{sizes.tolist()} must lie in (0.5, 1) with at least 2 subjects"
        )
    rng = np.random.default_rng(seed)
    n_subj = n_sites * subjects_per_site
    site = np.repeat(np.arange(n_sites), subjects_per_site)
    y = rng.integers(0, 2, n_subj)
    shift = rng.normal(0.0, site_sd, n_sites)[site]
    shift = shift + rng.normal(0.0, np.sqrt(1.0 - trial_noise_sd**2), n_subj)  # + v_j
    fold = rng.permutation(np.arange(n_subj) % n_folds)
    frames = []
    for f_idx, (fraction, n) in enumerate(zip(fractions, sizes, strict=True)):
        draws = [None] if fraction == 1.0 else list(range(repeats))
        for k in range(n_folds):
            test = np.flatnonzero(fold == k)
            for r in draws:
                delta = rng.normal(0.0, draw_sd / np.sqrt(n))
                for t in range(n_seeds):
                    auc = np.clip(curve[f_idx] + delta + rng.normal(0.0, seed_sd), 0.51, 0.999)
                    d = np.sqrt(2.0) * stats.norm.ppf(auc)
                    z = (
                        d * y[test]
                        + shift[test]
                        + rng.normal(0.0, trial_noise_sd, len(test))
                        - d / 2
                    )
                    tid = f"f{fraction}-k{k}-r{r}-s{t}"
                    frames.append(
                        pl.DataFrame(
                            {
                                "trial_id": tid,
                                "dataset": "sim",
                                "model": "net",
                                "outer_fold": k,
                                "seed": t,
                                "train_fraction": float(fraction),
                                "train_resample": r,
                                "n_train_subjects": int(n),
                                "sample_id": [f"sub-{j:04d}" for j in test],
                                "subject_id": [f"sub-{j:04d}" for j in test],
                                "site": [f"site{s}" for s in site[test]],
                                "split": "test",
                                "perturbation": "none",
                                "y_true": y[test].astype(float),
                                "y_pred": (z > 0).astype(float),
                                "score": special.expit(z),
                                "true_auc": float(auc),
                            },
                            schema_overrides={"train_resample": pl.Int64},
                        )
                    )
    return pl.concat(frames)
