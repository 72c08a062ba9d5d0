"""Per-prediction uncertainty of one trained network: input noise, MC dropout, temperature scaling.

A refit trial whose config has ``evaluation.uncertainty`` calls :func:`uncertainty_variants` after
its final evaluation, on its own best weights, for its validation and test samples. Each method
gives a *variant* of the trial's predictions (the ``variant`` column of docs/results.md), never a
change to the raw rows:

- ``input_noise`` (Monte Carlo propagation; Monchot et al. 2023): K forward passes of each image
  under independent draws of Gaussian noise of SD ``std`` (in units of the normalised image, like
  the ``gaussian_noise`` perturbation), seeded per sample from the trial seed → the predictive mean
  (the variant's ``probs`` / ``y_pred``), and the SD and 5/50/95% quantiles over the draws of the
  score (binary: P(positive); multi-class: the probability of the class the mean predicts;
  regression: the value). Monte Carlo, not the unscented transform.
- ``mc_dropout`` (Gal & Ghahramani 2016): K passes with only the dropout layers in training mode
  (normalisation layers stay in evaluation mode) → the predictive mean, the predictive entropy
  H[E_k p_k], the expected entropy E_k H[p_k] and their difference, the mutual information between
  the prediction and the weights (the epistemic part; Depeweg et al. 2018).
- ``calibrated`` (temperature scaling; Guo et al. 2017): T fitted on the trial's validation
  predictions only, with :func:`raybench_analysis.fit_temperature` (the analysis package's one
  implementation), applied to its validation and test predictions.

The K draws of a sample go through the network together, batched with those of other samples
(``chunk`` rows per forward pass), not in a Python loop over draws × samples. Everything is seeded
from the trial seed, so a trial run twice on CPU gives bit-identical variants. No Ray here.

References: Gal, Y. & Ghahramani, Z. (2016). Dropout as a Bayesian approximation. ICML, PMLR 48,
1050–1059. Depeweg, S. et al. (2018). Decomposition of uncertainty in Bayesian deep learning for
efficient and risk-sensitive learning. ICML, PMLR 80, 1184–1193. Monchot, P. et al. (2023). Input
uncertainty propagation through trained neural networks. ICML, PMLR 202, 25140–25173. Guo, C. et
al. (2017). On calibration of modern neural networks. ICML, PMLR 70, 1321–1330.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import torch
from raybench_analysis.calibration import apply_temperature, fit_temperature
from raybench_analysis.contract import polars_schema
from torch import nn
from torch.utils.data import DataLoader

from raybench.errors import SuiteError
from raybench.plan.config import UncertaintyConfig
from raybench.training.determinism import derive_seed
from raybench.training.loop import Predictions, TaskHead, _autocast

__all__ = [
    "QUANTILES",
    "Variant",
    "calibrated_rows",
    "dropout_layers",
    "entropy_decomposition",
    "stochastic_outputs",
    "summarize_draws",
    "uncertainty_variants",
]

#: Quantile levels of the input-noise draws (columns ``input_noise_q05``, ``_q50``, ``_q95``).
QUANTILES: tuple[float, ...] = (0.05, 0.5, 0.95)


@dataclass
class Variant:
    """One variant of a split's predictions: the mean prediction and the per-sample extras."""

    name: str
    split: str
    predictions: Predictions
    extra: dict[str, np.ndarray]


def dropout_layers(model: nn.Module) -> list[nn.Module]:
    """The dropout modules of ``model`` that drop something (``p > 0``)."""
    dropout_types = (nn.modules.dropout._DropoutNd,)
    return [m for m in model.modules() if isinstance(m, dropout_types) and float(m.p) > 0]


@contextlib.contextmanager
def _mc_dropout_mode(model: nn.Module) -> Iterator[None]:
    """Evaluation mode with every dropout layer (including p = 0 ones) in training mode."""
    was_training = model.training
    model.eval()
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.train()
    try:
        yield
    finally:
        model.train(was_training)


@torch.no_grad()
def stochastic_outputs(
    model: nn.Module,
    images: torch.Tensor,
    *,
    draws: int,
    noise_std: float | None = None,
    noise_seeds: Sequence[int] = (),
    mc_dropout: bool = False,
    chunk: int = 64,
    amp: bool = False,
) -> torch.Tensor:
    """Network outputs of ``draws`` stochastic passes of each image: shape ``(B, K, out)``.

    ``images`` is a batch ``(B, C, *spatial)`` on the model's device. With ``noise_std``, draw k
    of image i adds ``noise_std`` × N(0, I) noise from a generator seeded by ``noise_seeds[i]``
    (so a sample's draws do not depend on its batch); with ``mc_dropout``, the dropout layers are
    on (seed the global torch generator before calling for reproducible masks). The B × K inputs
    go through the network ``chunk`` rows at a time.
    """
    if draws < 1:
        raise SuiteError(f"draws={draws}: give at least 1 stochastic pass")
    n = images.shape[0]
    expanded = images.unsqueeze(1).expand(n, draws, *images.shape[1:])
    if noise_std is not None:
        if noise_std < 0:
            raise SuiteError(f"input noise std={noise_std}: must be >= 0")
        if len(noise_seeds) != n:
            raise SuiteError(f"noise_seeds: {len(noise_seeds)} seeds for {n} images")
        noise = torch.empty_like(expanded)
        for i, seed in enumerate(noise_seeds):
            generator = torch.Generator(device=images.device).manual_seed(int(seed))
            noise[i] = torch.randn(expanded.shape[1:], generator=generator, device=images.device)
        expanded = expanded + noise_std * noise
    flat = expanded.reshape(n * draws, *images.shape[1:])
    context = _mc_dropout_mode(model) if mc_dropout else contextlib.nullcontext()
    outputs = []
    with context:
        if not mc_dropout:
            model.eval()
        for start in range(0, flat.shape[0], max(int(chunk), 1)):
            with _autocast(images.device, amp):
                out = model(flat[start : start + max(int(chunk), 1)])
            outputs.append(out.float().reshape(out.shape[0], -1))
    merged = torch.cat(outputs)
    return merged.reshape(n, draws, merged.shape[-1])


def _entropy(p: np.ndarray) -> np.ndarray:
    """−Σ p log p over the last axis (0 log 0 = 0), in nats."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=-1)


def entropy_decomposition(probs: np.ndarray) -> dict[str, np.ndarray]:
    """Predictive entropy, expected entropy and mutual information of ``(n, K, C)`` draws.

    H[E_k p_k] = E_k H[p_k] + I, with I >= 0 the mutual information between the prediction and the
    stochastic weights (clipped at 0 against rounding; exactly 0 when the draws are identical).

    >>> p = np.array([[[0.9, 0.1], [0.1, 0.9]]])
    >>> out = entropy_decomposition(p)
    >>> round(float(out["mutual_information"][0]), 4)
    0.3681
    """
    mean = probs.mean(axis=1)
    predictive = _entropy(mean)
    expected = _entropy(probs).mean(axis=1)
    same = np.all(probs == probs[:, :1], axis=(1, 2))
    mutual = np.where(same, 0.0, np.maximum(predictive - expected, 0.0))
    return {
        "predictive_entropy": predictive,
        "expected_entropy": np.where(same, predictive, expected),
        "mutual_information": mutual,
    }


def summarize_draws(
    outputs: torch.Tensor, target: torch.Tensor, head: TaskHead, *, input_noise: bool
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(``Predictions`` fields, extra columns) of ``(B, K, out)`` draws for one batch.

    The prediction is the mean over draws (class probabilities, or the value); ``loss`` is the
    per-sample loss of that mean (negative log of the true class's mean probability; squared error
    on the standardised target). ``input_noise`` adds the SD (ddof = 1) and quantiles of the score
    over draws; otherwise the entropies of :func:`entropy_decomposition` are added.
    """
    t = target.reshape(-1).double().cpu().numpy()
    draws = outputs.shape[1]
    if head.task_type == "classification":
        probs = torch.softmax(outputs.double(), dim=-1).cpu().numpy()
        mean = probs.mean(axis=1)
        y = t.astype(np.int64)
        fields = {
            "y_true": t,
            "y_pred": mean.argmax(axis=1).astype(float),
            "probs": mean,
            "loss": -np.log(np.maximum(mean[np.arange(len(y)), y], np.finfo(float).tiny)),
        }
        column = 1 if mean.shape[1] == 2 else None
        top = mean.argmax(axis=1) if column is None else np.full(len(y), column)
        values = probs[np.arange(len(y)), :, top] if len(y) else np.zeros((0, draws))
    elif head.task_type == "regression":
        z = outputs[..., 0].double().cpu().numpy()
        mean_z = z.mean(axis=1)
        scale, shift = getattr(head, "sd", 1.0), getattr(head, "mean", 0.0)
        values = z * scale + shift
        fields = {
            "y_true": t * scale + shift,
            "y_pred": mean_z * scale + shift,
            "loss": (mean_z - t) ** 2,
        }
    else:
        raise SuiteError(f"per-prediction uncertainty is not available for {head.task_type}")
    extra: dict[str, np.ndarray] = {"draws": np.full(len(t), draws, dtype=np.int64)}
    if input_noise:
        extra["input_noise_sd"] = values.std(axis=1, ddof=1) if draws > 1 else np.zeros(len(t))
        for level, q in zip(QUANTILES, np.quantile(values, QUANTILES, axis=1), strict=True):
            extra[f"input_noise_q{round(level * 100):02d}"] = q
    elif head.task_type == "classification":
        extra.update(entropy_decomposition(probs))
    return fields, extra


def _variant(
    model: nn.Module,
    loader: DataLoader,
    sample_ids: Sequence[str],
    head: TaskHead,
    device: torch.device,
    *,
    name: str,
    split: str,
    draws: int,
    seed: int,
    noise_std: float | None,
    chunk: int,
    amp: bool,
) -> Variant:
    """The ``name`` variant of one split: stochastic passes over ``loader``, summarised."""
    fields: dict[str, list[np.ndarray]] = {}
    extra: dict[str, list[np.ndarray]] = {}
    if name == "mc_dropout":
        torch.manual_seed(derive_seed(seed, "mc_dropout", split))
    for batch in loader:
        images = batch["image"].to(device)
        index = batch["index"].numpy()
        seeds = [derive_seed(seed, "input_noise", sample_ids[i]) for i in index]
        out = stochastic_outputs(
            model,
            images,
            draws=draws,
            noise_std=noise_std,
            noise_seeds=seeds if noise_std is not None else (),
            mc_dropout=name == "mc_dropout",
            chunk=chunk,
            amp=amp,
        )
        f, e = summarize_draws(out, batch["target"], head, input_noise=name == "input_noise")
        for key, value in {**f, "index": index}.items():
            fields.setdefault(key, []).append(value)
        for key, value in e.items():
            extra.setdefault(key, []).append(value)
    merged = {k: np.concatenate(v) for k, v in fields.items()}
    return Variant(
        name, split, Predictions(**merged), {k: np.concatenate(v) for k, v in extra.items()}
    )


def uncertainty_variants(
    model: nn.Module,
    config: UncertaintyConfig,
    loaders: Mapping[str, tuple[DataLoader, Sequence[str]]],
    head: TaskHead,
    device: torch.device,
    *,
    seed: int,
    chunk: int,
    amp: bool = False,
) -> list[Variant]:
    """The ``input_noise`` and ``mc_dropout`` variants of each split of ``loaders``.

    ``loaders`` maps a split (``val``, ``test``) to its unshuffled loader and the sample ids in
    dataset order. Raises :class:`SuiteError` when MC dropout is asked of a network without a
    dropout layer (a plugin; built-in networks are checked when the suite is validated).
    """
    if config.mc_dropout is not None and not dropout_layers(model):
        raise SuiteError(
            "evaluation.uncertainty.mc_dropout: the network has no dropout layer with p > 0; give "
            "the model params.dropout > 0 or remove mc_dropout"
        )
    methods: list[tuple[str, int, float | None]] = []
    if config.input_noise is not None:
        methods.append(("input_noise", config.input_noise.draws, config.input_noise.std))
    if config.mc_dropout is not None:
        methods.append(("mc_dropout", config.mc_dropout.draws, None))
    out = []
    for name, draws, std in methods:
        for split, (loader, ids) in loaders.items():
            out.append(
                _variant(
                    model,
                    loader,
                    ids,
                    head,
                    device,
                    name=name,
                    split=split,
                    draws=draws,
                    seed=seed,
                    noise_std=std,
                    chunk=chunk,
                    amp=amp,
                )
            )
    return out


def calibrated_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Temperature-scaled copies of a trial's raw, unperturbed ``val`` and ``test`` rows.

    T is fitted on the ``val`` rows only (:func:`raybench_analysis.fit_temperature`), applied to
    both splits (:func:`raybench_analysis.apply_temperature`; the argmax is unchanged), recorded
    in ``temperature``, with ``variant = "calibrated"`` and ``loss`` the negative log of the true
    class's calibrated probability.
    """
    schema = polars_schema("predictions")
    frame = pl.DataFrame([dict(r) for r in rows], schema=schema).filter(
        (pl.col("variant") == "raw") & (pl.col("perturbation") == "none")
    )
    if frame.filter(pl.col("split") == "val").height == 0:
        raise SuiteError(
            "evaluation.uncertainty.calibration: the trial has no validation samples to fit the "
            "temperature on (validation.inner must give some)"
        )
    scaled = apply_temperature(frame, fit_temperature(frame, by=None))
    probs = np.array(scaled.get_column("probs").to_list(), dtype=float)
    y = scaled.get_column("y_true").to_numpy().astype(np.int64)
    loss = -np.log(np.maximum(probs[np.arange(len(y)), y], np.finfo(float).tiny))
    return scaled.with_columns(loss=pl.Series(loss)).to_dicts()
