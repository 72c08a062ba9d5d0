"""Simulated raybench results with known truth: the test bed of every method in the package.

A hierarchical generative model produces the ``trials`` and ``predictions`` tables of
docs/results.md for several models trained over several seeds and outer folds, evaluated on images
nested in sessions, subjects, scanners and sites. Because the model is Gaussian on a latent scale,
the population value of each metric is known in closed form, so tests and the simulation studies
in ``analysis/validation`` can check that intervals cover it and that tests keep their level.

Generative model (binary classification). Subject ``j`` of site ``s`` has a label
``y_j ~ Bernoulli(prevalence)``; image ``i`` is one session ``k`` of that subject. Model ``m``
trained with seed ``r`` on outer fold ``f`` gives the latent score

    z = -d/2 + d * y_j + u_s + v_j + w_k + e,      d = mu_m + a_{m,r} + b_{m,f} + g_s

with site shift ``u_s ~ N(0, site_sd^2)``, site-specific separation
``g_s ~ N(0, site_effect_sd^2)``, subject and session effects ``v_j``, ``w_k`` shared by all
models (so model comparisons are paired), seed and split effects ``a_{m,r} ~ N(0, seed_sd^2)``
and ``b_{m,f} ~ N(0, split_sd^2)``, and image noise ``e ~ N(0, noise_sd^2)`` fresh in every
trial. ``score = sigmoid(z)`` and ``y_pred = 1[z > 0]``. The regression variant predicts
``y_true + bias_m + a + b + u_s + v_j + w_k + e`` for a target ``y_true`` with its own site and
subject structure. The segmentation variant gives each image a Dice coefficient
``sigmoid(q_m + a + b + u_s + v_j + w_k + e)`` (a per-image score in (0, 1), logit-normal given
the seed and split effects), whose population mean is computed by Gauss–Hermite quadrature.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from scipy import special, stats

from raybench_analysis._frames import AnalysisError

__all__ = ["SimulatedRun", "simulate_predictions", "simulate_uncertainty", "write_results_dir"]

Task = Literal["classification", "regression", "segmentation"]


@dataclass(frozen=True)
class SimulatedRun:
    """The tables of one simulated suite run and the truth they were drawn from.

    Attributes
    ----------
    trials, predictions:
        Frames with the columns of docs/results.md (``splits`` and ``epochs`` are left out).
    scores:
        One row per (trial, perturbation): ``trial_id, model, seed, outer_fold, perturbation,
        metric, value`` for the task's metrics computed on that trial's test fold.
    truth:
        ``model, perturbation, metric, estimand, value``: the population value of each metric.
        ``estimand="trained"`` is conditional on the seed and split effects realised in this run
        (the performance of these trained models on new patients from new sites, seeds averaged,
        outer folds pooled); ``estimand="procedure"`` integrates them out (the training procedure).
        Metric ``auc_cell`` is the AUC of each (seed, fold) trained model averaged over the
        cells: the estimand of ``bootstrap(average_over=("outer_fold", "seed"))`` and of
        :func:`raybench_analysis.compare` (for accuracy, balanced accuracy, MAE and Dice the
        pooled and per-cell values coincide, folds being of equal expected size).
    effects:
        The realised random effects (``level, model, index, value``) for diagnostics.
    params:
        The arguments of :func:`simulate_predictions`.
    """

    trials: pl.DataFrame
    predictions: pl.DataFrame
    scores: pl.DataFrame
    truth: pl.DataFrame
    effects: pl.DataFrame
    params: dict[str, Any] = field(default_factory=dict)


def _check_positive(name: str, value: float, allow_zero: bool = True) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not np.isfinite(value) or not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise AnalysisError(
            f"simulate_predictions: {name}={value!r} must be a finite number {bound}."
        )


def _trial_id(*parts: object) -> str:
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:16]


def _mixture_auc(m1: np.ndarray, m0: np.ndarray, s1: float, s0: float) -> np.ndarray:
    """AUC of fold-pooled scores: mean over fold pairs of Phi((m1_f - m0_f') / sqrt(s1^2 + s0^2)).

    ``m1`` and ``m0`` have shape (..., K); the result has shape (...,).
    """
    diff = m1[..., :, None] - m0[..., None, :]
    return stats.norm.cdf(diff / np.hypot(s1, s0)).mean(axis=(-1, -2))


def _mixture_accuracy(
    m1: np.ndarray, m0: np.ndarray, s1: float, s0: float, prevalence: float
) -> np.ndarray:
    sens = stats.norm.cdf(m1 / s1).mean(axis=-1)
    spec = stats.norm.cdf(-m0 / s0).mean(axis=-1)
    return prevalence * sens + (1 - prevalence) * spec


def _mixture_balanced_accuracy(m1: np.ndarray, m0: np.ndarray, s1: float, s0: float) -> np.ndarray:
    return 0.5 * (stats.norm.cdf(m1 / s1).mean(axis=-1) + stats.norm.cdf(-m0 / s0).mean(axis=-1))


def _logit_normal_mean(mu: np.ndarray, sd: float, nodes: int = 64) -> np.ndarray:
    """E[sigmoid(X)] for X ~ N(mu, sd^2), elementwise, by Gauss–Hermite quadrature."""
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    values = special.expit(np.asarray(mu)[..., None] + sd * x)
    return (values * w).sum(axis=-1) / np.sqrt(2 * np.pi)


def _normal_mae(mu: np.ndarray, sd: float) -> np.ndarray:
    """E|X| for X ~ N(mu, sd^2) (folded normal mean)."""
    return sd * np.sqrt(2 / np.pi) * np.exp(-(mu**2) / (2 * sd**2)) + mu * (
        1 - 2 * stats.norm.cdf(-mu / sd)
    )


def simulate_predictions(
    *,
    task: Task = "classification",
    models: dict[str, float] | None = None,
    n_sites: int = 6,
    subjects_per_site: int = 20,
    sessions: int = 2,
    scanners_per_site: int = 2,
    n_seeds: int = 3,
    n_folds: int = 5,
    prevalence: float = 0.5,
    site_sd: float = 0.5,
    site_effect_sd: float = 0.3,
    subject_sd: float = 0.8,
    model_subject_sd: float = 0.0,
    session_sd: float = 0.3,
    seed_sd: float = 0.1,
    split_sd: float = 0.1,
    noise_sd: float = 0.5,
    perturbations: dict[str, list[float]] | None = None,
    perturbation_gain: float = 2.0,
    dataset: str = "synth",
    suite: str = "simulated",
    seed: int = 0,
    truth_draws: int = 4000,
) -> SimulatedRun:
    """Simulate the results of a cross-validated benchmark with known population metrics.

    Parameters
    ----------
    task:
        ``"classification"`` (binary; ``score`` is the positive-class probability) or
        ``"regression"`` (``y_pred`` is a value) or ``"segmentation"`` (``dice`` per image).
    models:
        Model name -> true effect. Classification: the latent separation ``mu_m`` between classes
        (in latent SD units; 0 is chance). Regression: the bias ``bias_m`` of the predictions.
        Segmentation: the mean logit ``q_m`` of the Dice coefficient.
        Default ``{"model_a": 1.5, "model_b": 1.5, "model_c": 2.0}``.
    n_sites, subjects_per_site, sessions, scanners_per_site:
        The hierarchy; every subject has ``sessions`` images.
    n_seeds, n_folds:
        Training seeds, and outer folds (subjects assigned to folds once, shared by all seeds).
    prevalence:
        Probability that a subject is positive (classification).
    site_sd, site_effect_sd, subject_sd, session_sd, seed_sd, split_sd, noise_sd:
        Standard deviations of the random effects of the model above.
    model_subject_sd:
        SD of a model-specific subject effect (models err on different patients), added to the
        latent score of every image of the subject for that model, in every seed and fold. It
        makes a finite test set favour one of two equal models consistently across seeds: the
        situation where treating seeds as replicates fails.
    perturbations:
        Perturbation type -> severities. A perturbation of severity ``t`` shrinks the separation
        (classification) or adds bias (regression) by ``perturbation_gain * t`` relative units and
        adds image noise of SD ``perturbation_gain * t``.
    dataset, suite:
        Names written into the tables.
    seed:
        Seed of the random generator; the same arguments give identical tables.
    truth_draws:
        Monte Carlo draws of seed and split effects for the ``procedure`` truth.

    Returns
    -------
    SimulatedRun
        ``trials``, ``predictions``, per-trial ``scores``, ``truth`` (``model, perturbation,
        metric, estimand, value``), realised ``effects`` and ``params``.

    Notes
    -----
    Given the seed and split effects, the latent score of a positive image from a random new site
    is ``N(d_f/2, s1^2)`` and of a negative ``N(-d_f/2, s0^2)`` with
    ``s1^2 = site_sd^2 + site_effect_sd^2 + subject_sd^2 + model_subject_sd^2 + session_sd^2 +
    noise_sd^2`` (and without the ``site_effect_sd`` term for ``s0``: the positive mean carries the
    site-specific separation). Pooling the K outer folds gives the mixture AUC
    ``(1/K^2) sum_{f,f'} Phi((m1_f - m0_f') / sqrt(s1^2 + s0^2))`` and the accuracy
    ``p mean_f Phi(m1_f/s1) + (1-p) mean_f Phi(-m0_f/s0)``, averaged over seeds (``auc_pooled``
    pools the seeds too, as one ranking of every prediction, which is what ``bootstrap`` on the
    whole table estimates). The population
    is one of infinitely many sites, so a positive and a negative are drawn from different sites;
    with few sites the expected pooled sample AUC differs slightly from it (within-site pairs do
    not see the site shift).

    References
    ----------
    Bouthillier, X., Delaunay, P., Bronzi, M., et al. (2021). Accounting for variance in machine
    learning benchmarks. Proceedings of Machine Learning and Systems 3.

    Varoquaux, G., & Colliot, O. (2023). Evaluating machine learning models and their diagnostic
    value. In Machine Learning for Brain Disorders (pp. 601-630). Springer.

    Examples
    --------
    >>> run = simulate_predictions(n_sites=3, subjects_per_site=4, n_seeds=2, n_folds=2)
    >>> run.predictions.height  # 3 models x 2 seeds x 12 subjects x 2 sessions
    144
    >>> sorted(run.truth["metric"].unique().to_list())
    ['accuracy', 'auc', 'auc_cell', 'auc_pooled', 'balanced_accuracy']
    """
    params = dict(locals())
    if task not in ("classification", "regression", "segmentation"):
        raise AnalysisError(
            f"simulate_predictions: task={task!r} is not supported; use 'classification', "
            "'regression' or 'segmentation'."
        )
    models = (
        dict(models) if models is not None else {"model_a": 1.5, "model_b": 1.5, "model_c": 2.0}
    )
    if not models:
        raise AnalysisError("simulate_predictions: models={} is empty; give at least one model.")
    for name, value in {
        "n_sites": n_sites,
        "subjects_per_site": subjects_per_site,
        "sessions": sessions,
        "scanners_per_site": scanners_per_site,
        "n_seeds": n_seeds,
        "n_folds": n_folds,
    }.items():
        if int(value) != value or value < 1:
            raise AnalysisError(f"simulate_predictions: {name}={value!r} must be an integer >= 1.")
    if n_folds > n_sites * subjects_per_site:
        raise AnalysisError(
            f"simulate_predictions: n_folds={n_folds} exceeds the number of subjects "
            f"({n_sites * subjects_per_site}); lower n_folds or add subjects."
        )
    if not 0 < prevalence < 1:
        raise AnalysisError(f"simulate_predictions: prevalence={prevalence!r} must be in (0, 1).")
    sds = {
        "site_sd": site_sd,
        "site_effect_sd": site_effect_sd,
        "subject_sd": subject_sd,
        "model_subject_sd": model_subject_sd,
        "session_sd": session_sd,
        "seed_sd": seed_sd,
        "split_sd": split_sd,
    }
    for name, value in sds.items():
        _check_positive(name, value)
    _check_positive("noise_sd", noise_sd, allow_zero=False)
    perturbations = {k: [float(s) for s in v] for k, v in (perturbations or {}).items()}
    for ptype, sevs in perturbations.items():
        for sev in sevs:
            _check_positive(f"perturbations[{ptype!r}] severity", sev)

    rng = np.random.default_rng(seed)
    model_names = list(models)
    n_models = len(model_names)
    n_subj = n_sites * subjects_per_site

    # --- the hierarchy -----------------------------------------------------------------------
    subj_site = np.repeat(np.arange(n_sites), subjects_per_site)
    subj_scanner = rng.integers(0, scanners_per_site, n_subj)
    subj_label = (rng.random(n_subj) < prevalence).astype(np.float64)
    subj_fold = rng.permutation(np.arange(n_subj) % n_folds)
    u_site = rng.normal(0, site_sd, n_sites)
    g_site = rng.normal(0, site_effect_sd, n_sites)
    v_subj = rng.normal(0, subject_sd, n_subj)
    vm_subj = rng.normal(0, model_subject_sd, (len(models), n_subj))
    img_subj = np.repeat(np.arange(n_subj), sessions)
    img_session = np.tile(np.arange(sessions), n_subj)
    w_img = rng.normal(0, session_sd, img_subj.size)
    img_site = subj_site[img_subj]
    img_y = subj_label[img_subj]
    img_fold = subj_fold[img_subj]
    n_img = img_subj.size

    a_eff = rng.normal(0, seed_sd, (n_models, n_seeds))
    b_eff = rng.normal(0, split_sd, (n_models, n_folds))
    target = None
    if task == "regression":
        # a target with its own site and subject structure (e.g. brain age in years)
        target_subj = 70 + rng.normal(0, 3, n_sites)[subj_site] + rng.normal(0, 8, n_subj)
        target = target_subj[img_subj]

    site_ids = np.array([f"site-{s:02d}" for s in range(n_sites)])
    subj_ids = np.array([f"sub-{j:04d}" for j in range(n_subj)])
    sample_ids = np.array(
        [f"sub-{j:04d}_ses-{k}" for j, k in zip(img_subj, img_session, strict=True)]
    )
    session_ids = np.array([f"ses-{k}" for k in img_session])
    scanner_ids = np.array(
        [f"site-{s:02d}-scanner-{c}" for s, c in zip(subj_site, subj_scanner, strict=True)]
    )[img_subj]

    pert_list: list[tuple[str, str, float | None]] = [("none", "none", None)]
    for ptype, sevs in perturbations.items():
        pert_list += [(f"{ptype}(severity={sev:g})", ptype, sev) for sev in sevs]

    # --- trials and predictions ----------------------------------------------------------------
    trial_rows: list[dict[str, Any]] = []
    pred_parts: list[pl.DataFrame] = []
    for mi, model in enumerate(model_names):
        for r in range(n_seeds):
            for f in range(n_folds):
                tid = _trial_id(suite, dataset, model, "outer", f, r)
                test = img_fold == f
                idx = np.flatnonzero(test)
                noise = rng.normal(0, noise_sd, idx.size)
                shared = u_site[img_site[idx]] + v_subj[img_subj[idx]] + w_img[idx]
                shared = shared + vm_subj[mi, img_subj[idx]]
                for pid, ptype, sev in pert_list:
                    t = 0.0 if sev is None else perturbation_gain * sev
                    extra = rng.normal(0, t, idx.size) if t > 0 else 0.0
                    if task == "classification":
                        d = models[model] * max(0.0, 1 - t) + a_eff[mi, r] + b_eff[mi, f]
                        d_img = d + g_site[img_site[idx]]
                        z = -d / 2 + d_img * img_y[idx] + shared + noise + extra
                        score = special.expit(z)
                        y_true = img_y[idx]
                        y_pred = (z > 0).astype(np.float64)
                        probs = np.stack([1 - score, score], axis=1)
                        loss = -(y_true * np.log(score) + (1 - y_true) * np.log1p(-score))
                        score_col: np.ndarray | None = score
                        dice_col: np.ndarray | None = None
                    elif task == "segmentation":
                        q = models[model] - t + a_eff[mi, r] + b_eff[mi, f]
                        dice_col = special.expit(q + shared + noise + extra)
                        y_true = y_pred = np.full(idx.size, np.nan)
                        loss = 1 - dice_col
                        score_col = probs = None
                    else:
                        err = models[model] + t + a_eff[mi, r] + b_eff[mi, f] + shared + noise
                        y_true = target[idx]
                        y_pred = y_true + err + extra
                        loss = (y_pred - y_true) ** 2
                        score_col = probs = None
                    frame = {
                        "trial_id": tid,
                        "dataset": dataset,
                        "model": model,
                        "protocol": "outer",
                        "outer_fold": f,
                        "seed": r,
                        "sample_id": sample_ids[idx],
                        "subject_id": subj_ids[img_subj[idx]],
                        "session_id": session_ids[idx],
                        "scanner": scanner_ids[idx],
                        "site": site_ids[img_site[idx]],
                        "split": "test",
                        "perturbation": pid,
                        "perturbation_type": ptype,
                        "severity": sev,
                        "y_true": y_true,
                        "y_pred": y_pred,
                        "score": score_col,
                        "probs": None if probs is None else list(probs),
                        "dice": None if task != "segmentation" else dice_col,
                        "loss": loss,
                    }
                    pred_parts.append(pl.DataFrame(frame, schema=_PRED_SCHEMA, strict=True))
                n_test = int(idx.size)
                trial_rows.append(_trial_row(tid, suite, dataset, model, task, f, r, n_img, n_test))
    predictions = pl.concat(pred_parts, how="vertical")
    trials = pl.DataFrame(trial_rows, schema=_TRIAL_SCHEMA)

    truth = _truth(
        task, models, a_eff, b_eff, pert_list, perturbation_gain, prevalence, sds, noise_sd,
        truth_draws, rng,
    )  # fmt: skip
    effects = _effects_frame(model_names, a_eff, b_eff, site_ids, u_site, g_site)
    scores = _trial_scores(predictions, task)
    return SimulatedRun(trials, predictions, scores, truth, effects, params)


_PRED_SCHEMA: dict[str, pl.DataType] = {
    "trial_id": pl.String,
    "dataset": pl.String,
    "model": pl.String,
    "protocol": pl.String,
    "outer_fold": pl.Int64,
    "seed": pl.Int64,
    "sample_id": pl.String,
    "subject_id": pl.String,
    "session_id": pl.String,
    "scanner": pl.String,
    "site": pl.String,
    "split": pl.String,
    "perturbation": pl.String,
    "perturbation_type": pl.String,
    "severity": pl.Float64,
    "y_true": pl.Float64,
    "y_pred": pl.Float64,
    "score": pl.Float64,
    "probs": pl.List(pl.Float64),
    "dice": pl.Float64,
    "loss": pl.Float64,
}

_TRIAL_SCHEMA: dict[str, pl.DataType] = {
    "trial_id": pl.String,
    "suite": pl.String,
    "dataset": pl.String,
    "model": pl.String,
    "task": pl.String,
    "stage": pl.String,
    "protocol": pl.String,
    "outer_fold": pl.Int64,
    "inner_fold": pl.Int64,
    "seed": pl.Int64,
    "params": pl.String,
    "status": pl.String,
    "error": pl.String,
    "attempts": pl.Int64,
    "n_train": pl.Int64,
    "n_val": pl.Int64,
    "n_test": pl.Int64,
    "best_epoch": pl.Int64,
    "val_score": pl.Float64,
}


def _trial_row(
    tid: str, suite: str, dataset: str, model: str, task: str, fold: int, seed: int, n: int, nt: int
) -> dict[str, Any]:
    return {
        "trial_id": tid,
        "suite": suite,
        "dataset": dataset,
        "model": model,
        "task": task,
        "stage": "refit",
        "protocol": "outer",
        "outer_fold": fold,
        "inner_fold": None,
        "seed": seed,
        "params": "{}",
        "status": "completed",
        "error": None,
        "attempts": 1,
        "n_train": n - nt,
        "n_val": 0,
        "n_test": nt,
        "best_epoch": None,
        "val_score": None,
    }


def _truth(
    task: str,
    models: dict[str, float],
    a_eff: np.ndarray,
    b_eff: np.ndarray,
    pert_list: list[tuple[str, str, float | None]],
    gain: float,
    prevalence: float,
    sds: dict[str, float],
    noise_sd: float,
    draws: int,
    rng: np.random.Generator,
) -> pl.DataFrame:
    """Population metrics per model and perturbation, conditional and integrated (see Notes)."""
    rows: list[dict[str, Any]] = []
    n_folds = b_eff.shape[1]
    base_var = sds["site_sd"] ** 2 + sds["subject_sd"] ** 2 + sds["session_sd"] ** 2 + noise_sd**2
    base_var += sds["model_subject_sd"] ** 2
    a_mc = rng.normal(0, sds["seed_sd"], (draws, 1))
    b_mc = rng.normal(0, sds["split_sd"], (draws, n_folds))
    for mi, (model, effect) in enumerate(models.items()):
        for pid, _ptype, sev in pert_list:
            t = 0.0 if sev is None else gain * sev
            var = base_var + t**2
            for estimand, a, b in (
                ("trained", a_eff[mi][:, None], b_eff[mi][None, :]),
                ("procedure", a_mc, b_mc),
            ):
                if task == "classification":
                    d = effect * max(0.0, 1 - t) + a + b  # (seeds or draws, folds)
                    s1 = float(np.sqrt(var + sds["site_effect_sd"] ** 2))
                    s0 = float(np.sqrt(var))
                    m1, m0 = d / 2, -d / 2
                    values = {
                        "auc": _mixture_auc(m1, m0, s1, s0).mean(),
                        # each (seed, fold) model's own AUC, then averaged over the cells
                        "auc_cell": float(stats.norm.cdf((m1 - m0) / np.hypot(s1, s0)).mean()),
                        # all seeds and folds pooled into one ranking (as bootstrap() pools)
                        "auc_pooled": float(
                            _mixture_auc(m1.reshape(1, -1), m0.reshape(1, -1), s1, s0)[0]
                        )
                        if estimand == "trained"
                        else _mixture_auc(m1, m0, s1, s0).mean(),
                        "accuracy": _mixture_accuracy(m1, m0, s1, s0, prevalence).mean(),
                        "balanced_accuracy": _mixture_balanced_accuracy(m1, m0, s1, s0).mean(),
                    }
                elif task == "segmentation":
                    mu = effect - t + a + b
                    values = {"dice": float(_logit_normal_mean(mu, float(np.sqrt(var))).mean())}
                else:
                    mu = effect + t + a + b
                    sd = float(np.sqrt(var))
                    values = {
                        "mae": _normal_mae(mu, sd).mean(),
                        "rmse": np.sqrt((mu**2).mean(axis=-1) + sd**2).mean(),
                    }
                rows += [
                    {
                        "model": model,
                        "perturbation": pid,
                        "metric": k,
                        "estimand": estimand,
                        "value": float(v),
                    }
                    for k, v in values.items()
                ]
    return pl.DataFrame(rows)


def _effects_frame(
    models: list[str],
    a_eff: np.ndarray,
    b_eff: np.ndarray,
    site_ids: np.ndarray,
    u_site: np.ndarray,
    g_site: np.ndarray,
) -> pl.DataFrame:
    rows = [
        {"level": "seed", "model": m, "index": str(r), "value": float(a_eff[i, r])}
        for i, m in enumerate(models)
        for r in range(a_eff.shape[1])
    ]
    rows += [
        {"level": "split", "model": m, "index": str(f), "value": float(b_eff[i, f])}
        for i, m in enumerate(models)
        for f in range(b_eff.shape[1])
    ]
    rows += [
        {"level": "site_shift", "model": None, "index": s, "value": float(u)}
        for s, u in zip(site_ids, u_site, strict=True)
    ]
    rows += [
        {"level": "site_separation", "model": None, "index": s, "value": float(g)}
        for s, g in zip(site_ids, g_site, strict=True)
    ]
    return pl.DataFrame(rows, schema={"level": pl.String, "model": pl.String, "index": pl.String,
                                      "value": pl.Float64})  # fmt: skip


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    pos = y == 1
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = stats.rankdata(s)
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _trial_scores(predictions: pl.DataFrame, task: str) -> pl.DataFrame:
    rows: list[dict[str, Any]] = []
    keys = ["trial_id", "model", "seed", "outer_fold", "perturbation"]
    for key, part in predictions.group_by(keys, maintain_order=True):
        y = part["y_true"].to_numpy()
        if task == "classification":
            yp = part["y_pred"].to_numpy()
            values = {"auc": _auc(y, part["score"].to_numpy()), "accuracy": float((y == yp).mean())}
        elif task == "segmentation":
            values = {"dice": float(part["dice"].mean())}
        else:
            e = part["y_pred"].to_numpy() - y
            values = {"mae": float(np.abs(e).mean()), "rmse": float(np.sqrt((e**2).mean()))}
        base = dict(zip(keys, key, strict=True))
        rows += [{**base, "metric": k, "value": v} for k, v in values.items()]
    return pl.DataFrame(rows)


def write_results_dir(run: SimulatedRun, path: str | Path) -> Path:
    """Write a simulated run as a results directory (docs/results.md): one Parquet per trial.

    Writes ``trials/<trial_id>.parquet`` and ``predictions/<trial_id>.parquet`` (and a ``splits``
    table with the test roles), so that ``raybench analyze`` and :func:`load`-style readers see it
    exactly as a real run. Returns the directory.

    Examples
    --------
    >>> import tempfile
    >>> run = simulate_predictions(n_sites=2, subjects_per_site=3, n_seeds=1, n_folds=2)
    >>> out = write_results_dir(run, tempfile.mkdtemp())
    >>> len(list((out / "trials").glob("*.parquet")))  # 3 models x 1 seed x 2 folds
    6
    """
    root = Path(path)
    for table in ("trials", "predictions", "splits"):
        (root / table).mkdir(parents=True, exist_ok=True)
    for tid, part in run.predictions.group_by("trial_id"):
        trial_id = str(tid[0])
        part.write_parquet(root / "predictions" / f"{trial_id}.parquet")
        splits = (
            part.filter(pl.col("perturbation") == "none")
            .select("trial_id", "sample_id", "subject_id", "session_id", "site")
            .with_columns(role=pl.lit("test"))
        )
        splits.write_parquet(root / "splits" / f"{trial_id}.parquet")
        # trials last: a trial is committed when its trials file exists
        run.trials.filter(pl.col("trial_id") == trial_id).write_parquet(
            root / "trials" / f"{trial_id}.parquet"
        )
    return root


def simulate_uncertainty(
    *,
    n_sites: int = 4,
    subjects_per_site: int = 40,
    images_per_subject: int = 2,
    n_folds: int = 3,
    n_seeds: int = 3,
    n_classes: int = 2,
    temperature: float = 1.0,
    seed_sd: float = 0.0,
    subject_sd: float = 1.5,
    image_sd: float = 1.0,
    shifted_sites: int = 0,
    shift_temperature: float = 3.0,
    shifted_in_val: bool = True,
    val_fraction: float = 0.3,
    model: str = "m",
    seed: int = 0,
) -> pl.DataFrame:
    """Predictions with known calibration: validation and test rows of every (fold, seed) trial.

    Parameters
    ----------
    n_sites, subjects_per_site, images_per_subject:
        The hierarchy (``site``, ``subject_id``, ``sample_id``).
    n_folds, n_seeds:
        Outer folds (subjects assigned once) and seeds; each trial predicts its test subjects
        (``split="test"``) and a ``val_fraction`` of its training subjects (``split="val"``).
    n_classes:
        2 gives ``score`` and ``probs``; more gives ``probs`` (``score`` null).
    temperature:
        The networks report softmax(temperature · η) where η are the true class logits: 1 is
        perfectly calibrated (with ``seed_sd=0``), 2 overconfident (temperature scaling should
        find T = 2).
    seed_sd:
        S.d. of seed noise added to every logit of every trial (repeatability; breaks exact
        calibration).
    subject_sd, image_sd:
        S.d. of the subject and image parts of the true logits.
    shifted_sites, shift_temperature:
        The last ``shifted_sites`` sites draw labels from softmax(η / shift_temperature): their
        labels are noisier than the model believes (a site the model is overconfident on).
    shifted_in_val:
        ``False`` leaves the shifted sites out of the validation rows (calibration never sees
        them).
    model, seed:
        Model name; seed of the generator (same arguments, same table).

    Returns
    -------
    polars.DataFrame
        The predictions columns of the results contract (docs/results.md), in its order and
        types, plus ``variant = "raw"``.

    Notes
    -----
    Image i of subject j has true class logits η_i = v_j + e_i, v_j ~ N(0, subject_sd² I),
    e_i ~ N(0, image_sd² I); its label is drawn from softmax(η_i) (softmax(η_i / s) at a
    shifted site, s = ``shift_temperature``), and the network of seed r reports
    softmax(temperature · (η_i + a_ir)), a_ir ~ N(0, seed_sd² I). With temperature 1 and
    seed_sd 0 the reported probabilities are the true ones (perfect calibration), so ECE and
    the squared calibration error are 0 in the population and the recalibration slope is 1;
    with temperature τ the slope is 1/τ and temperature scaling recovers T = τ.

    Examples
    --------
    >>> df = simulate_uncertainty(n_sites=2, subjects_per_site=6, n_seeds=2)
    >>> sorted(df["split"].unique().to_list()), df["seed"].n_unique()
    (['test', 'val'], 2)
    """
    _check_positive("temperature", temperature, allow_zero=False)
    _check_positive("seed_sd", seed_sd)
    if not 0 < val_fraction < 1 or n_classes < 2 or n_folds < 2:
        raise AnalysisError(
            f"simulate_uncertainty: val_fraction={val_fraction!r} must be in (0, 1), "
            f"n_classes={n_classes!r} >= 2, n_folds={n_folds!r} >= 2"
        )
    rng = np.random.default_rng(seed)
    n_subj = n_sites * subjects_per_site
    subj_site = np.repeat(np.arange(n_sites), subjects_per_site)
    n_img = n_subj * images_per_subject
    img_subj = np.repeat(np.arange(n_subj), images_per_subject)
    eta = rng.normal(0, subject_sd, (n_subj, n_classes))[img_subj]
    eta = eta + rng.normal(0, image_sd, (n_img, n_classes))
    shifted = subj_site[img_subj] >= n_sites - shifted_sites
    label_logits = np.where(shifted[:, None], eta / shift_temperature, eta)
    label_p = special.softmax(label_logits, axis=1)
    y = (rng.random(n_img)[:, None] > np.cumsum(label_p, axis=1)).sum(axis=1).astype(np.float64)
    fold = rng.permutation(np.arange(n_subj) % n_folds)
    subj_ids = np.array([f"sub-{j:04d}" for j in range(n_subj)])
    site_ids = np.array([f"site-{s}" for s in range(n_sites)])
    parts = []
    for f in range(n_folds):
        train = np.flatnonzero(fold != f)
        val_subj = rng.choice(train, size=max(1, round(val_fraction * len(train))), replace=False)
        test_img = np.flatnonzero(fold[img_subj] == f)
        val_img = np.flatnonzero(np.isin(img_subj, val_subj) & (shifted_in_val | ~shifted))
        for r in range(n_seeds):
            noise = rng.normal(0, seed_sd, (n_img, n_classes)) if seed_sd > 0 else 0.0
            probs = special.softmax(temperature * (eta + noise), axis=1)
            for split, idx in (("val", val_img), ("test", test_img)):
                p = probs[idx]
                parts.append(pl.DataFrame({
                    "trial_id": _trial_id("uncertainty", model, f, r),
                    "dataset": "synth", "model": model, "protocol": "outer",
                    "outer_fold": f, "seed": r,
                    "sample_id": [f"img-{i:05d}" for i in idx],
                    "subject_id": subj_ids[img_subj[idx]],
                    "session_id": [f"ses-{i % images_per_subject}" for i in idx],
                    "scanner": site_ids[subj_site[img_subj[idx]]],
                    "site": site_ids[subj_site[img_subj[idx]]],
                    "split": split, "perturbation": "none", "variant": "raw",
                    "y_true": y[idx], "y_pred": p.argmax(axis=1).astype(np.float64),
                    "score": p[:, 1] if n_classes == 2 else None,
                    "probs": p.tolist(),
                    "loss": -np.log(p[np.arange(len(idx)), y[idx].astype(np.int64)]),
                }, schema_overrides={"score": pl.Float64}))  # fmt: skip
    from raybench_analysis.contract import polars_schema  # the one declaration of the columns

    schema = polars_schema("predictions")
    out = pl.concat(parts).with_columns(
        perturbation_type=pl.lit("none"), severity=pl.lit(None), dice=pl.lit(None)
    )
    # the per-sample uncertainty columns of recorded variants are absent (null) in raw rows
    return out.select(pl.col(c).cast(t) for c, t in schema.items() if c in out.columns)
