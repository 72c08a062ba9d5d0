"""Per-prediction uncertainty of a trial: known truth (linear model, dropout off), determinism,
the variants a refit records and the errors a bad configuration gives."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch
from raybench_analysis.calibration import apply_temperature, fit_temperature
from torch import nn

from raybench.data.cohort import Cohort
from raybench.errors import SuiteError
from raybench.store.schemas import SCHEMAS
from raybench.training.loop import make_head
from raybench.training.trial import TrialContext, run_trial
from raybench.training.uncertainty import (
    entropy_decomposition,
    stochastic_outputs,
    summarize_draws,
)

UNCERTAINTY = {
    "input_noise": {"type": "gaussian_noise", "std": 0.05, "draws": 8},
    "mc_dropout": {"draws": 8},
    "calibration": ["temperature"],
}
DROPOUT_MODEL = {
    "arch": "classifier",
    "params": {"channels": [4, 8], "strides": [2, 2], "dropout": 0.3},
}


def _linear(d: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, 1))


def test_input_noise_variance_of_a_linear_model_is_w_sigma_w() -> None:
    # y = w'x + b with x ~ N(x0, sigma^2 I): Var y = w' Sigma w = sigma^2 ||w||^2 (exact)
    model = _linear(27)
    w = model[1].weight.detach().double().reshape(-1)
    sigma, draws = 0.3, 4000
    images = torch.randn(3, 1, 3, 3, 3)
    out = stochastic_outputs(
        model, images, draws=draws, noise_std=sigma, noise_seeds=[1, 2, 3], chunk=1000
    )
    assert out.shape == (3, draws, 1)
    truth = float(sigma**2 * (w @ w))
    head = make_head("regression", mean=0.0, sd=1.0)
    _, extra = summarize_draws(out, torch.zeros(3), head, input_noise=True)
    var = extra["input_noise_sd"] ** 2
    # the sample variance of K Gaussian draws has relative s.e. sqrt(2 / (K - 1)) ~ 2.2%
    assert np.all(np.abs(var / truth - 1) < 5 * np.sqrt(2 / (draws - 1)))
    # the mean of the draws estimates w'x0 + b (s.e. sqrt(truth / K))
    clean = model(images).detach().double().reshape(-1).numpy()
    assert np.allclose(out.double().mean(dim=1).reshape(-1), clean, atol=5 * np.sqrt(truth / draws))
    # quantiles of a Gaussian: q95 - q05 = 2 * 1.645 sd
    spread = extra["input_noise_q95"] - extra["input_noise_q05"]
    assert np.allclose(spread, 2 * 1.6449 * np.sqrt(truth), rtol=0.1)


def test_a_sample_s_noise_does_not_depend_on_its_batch() -> None:
    model = _linear(27)
    images = torch.randn(2, 1, 3, 3, 3)
    both = stochastic_outputs(model, images, draws=5, noise_std=0.1, noise_seeds=[7, 8])
    alone = stochastic_outputs(model, images[1:], draws=5, noise_std=0.1, noise_seeds=[8])
    assert torch.allclose(both[1], alone[0], atol=1e-6)
    other = stochastic_outputs(model, images[1:], draws=5, noise_std=0.1, noise_seeds=[9])
    assert not torch.allclose(other[0], alone[0])


def _dropout_classifier(p: float) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(27, 16), nn.BatchNorm1d(16), nn.Dropout(p), nn.Linear(16, 3)
    )


def test_mc_dropout_with_dropout_off_has_zero_mutual_information() -> None:
    images = torch.randn(4, 1, 3, 3, 3)
    head = make_head("classification")
    target = torch.zeros(4)
    off = stochastic_outputs(_dropout_classifier(0.0), images, draws=10, mc_dropout=True)
    _, extra = summarize_draws(off, target, head, input_noise=False)
    assert np.all(extra["mutual_information"] == 0.0)
    assert np.array_equal(extra["predictive_entropy"], extra["expected_entropy"])
    model = _dropout_classifier(0.5).eval()
    on = stochastic_outputs(model, images, draws=10, mc_dropout=True)
    _, extra = summarize_draws(on, target, head, input_noise=False)
    assert np.all(extra["mutual_information"] > 0)
    assert not any(m.training for m in model.modules())  # eval mode restored
    assert torch.equal(model[2].running_mean, torch.zeros(16))  # batch norm stayed in eval


def test_entropy_decomposition_by_hand() -> None:
    p = np.array([[[0.9, 0.1], [0.1, 0.9]], [[0.5, 0.5], [0.5, 0.5]]])
    out = entropy_decomposition(p)
    h = -(0.9 * np.log(0.9) + 0.1 * np.log(0.1))
    assert out["predictive_entropy"] == pytest.approx([np.log(2), np.log(2)])
    assert out["expected_entropy"] == pytest.approx([h, np.log(2)])
    assert out["mutual_information"] == pytest.approx([np.log(2) - h, 0.0])


def _frame(table: Any) -> pl.DataFrame:
    return pl.from_arrow(table)  # type: ignore[return-value]


def test_a_refit_records_every_variant_of_its_val_and_test_samples(
    cohort: Cohort, spec_of: Any, tmp_path: Path
) -> None:
    spec = spec_of(cohort, model=DROPOUT_MODEL, evaluation={"uncertainty": UNCERTAINTY})
    out = run_trial(spec, cohort, TrialContext(tmp_path))
    assert out.predictions.schema.equals(SCHEMAS["predictions"])
    df = _frame(out.predictions)
    counts = df.group_by("variant", "split").len().sort("variant", "split").rows()
    assert counts == [
        (v, s, 2)
        for v in ("calibrated", "input_noise", "mc_dropout", "raw")
        for s in ("test", "val")
    ]
    raw = df.filter(pl.col("variant") == "raw")
    # the calibrated rows are fit_temperature on the val rows, applied to both splits
    temps = fit_temperature(raw, by=None)
    expected = apply_temperature(raw, temps).sort("split", "sample_id")
    calibrated = df.filter(pl.col("variant") == "calibrated").sort("split", "sample_id")
    assert calibrated["score"].to_list() == pytest.approx(expected["score"].to_list())
    assert calibrated["temperature"].unique().to_list() == [temps["temperature"][0]]
    assert calibrated["y_pred"].to_list() == expected["y_pred"].to_list()
    p_true = [p[int(y)] for p, y in zip(calibrated["probs"], calibrated["y_true"], strict=True)]
    assert calibrated["loss"].to_list() == pytest.approx((-np.log(p_true)).tolist())
    noise = df.filter(pl.col("variant") == "input_noise")
    assert noise["draws"].to_list() == [8] * 4 and noise["input_noise_sd"].min() > 0
    assert (noise["input_noise_q05"] <= noise["input_noise_q95"]).all()
    assert noise["mutual_information"].null_count() == 4
    mc = df.filter(pl.col("variant") == "mc_dropout")
    assert mc["mutual_information"].min() >= 0 and mc["input_noise_sd"].null_count() == 4
    diff = mc["predictive_entropy"] - mc["expected_entropy"] - mc["mutual_information"]
    assert diff.abs().max() < 1e-12
    assert raw.select(pl.col(c).null_count() for c in ("draws", "temperature")).row(0) == (4, 4)


def test_uncertainty_is_bit_identical_on_cpu(cohort: Cohort, spec_of: Any, tmp_path: Path) -> None:
    spec = spec_of(cohort, model=DROPOUT_MODEL, evaluation={"uncertainty": UNCERTAINTY}, seed=5)
    a = run_trial(spec, cohort, TrialContext(tmp_path / "a"))
    b = run_trial(spec, cohort, TrialContext(tmp_path / "b"))
    assert a.predictions.equals(b.predictions)
    other = run_trial(
        spec_of(cohort, model=DROPOUT_MODEL, evaluation={"uncertainty": UNCERTAINTY}, seed=6),
        cohort,
        TrialContext(tmp_path / "a"),
    )
    assert not a.predictions.column("mutual_information").equals(
        other.predictions.column("mutual_information")
    )


def test_regression_input_noise(cohort: Cohort, spec_of: Any, tmp_path: Path) -> None:
    spec = spec_of(
        cohort,
        task={"type": "regression", "label": "age"},
        model={"arch": "regressor", "params": {"channels": [4, 8], "strides": [2, 2]}},
        evaluation={"uncertainty": {"input_noise": {"std": 0.1, "draws": 6}}},
    )
    df = _frame(run_trial(spec, cohort, TrialContext(tmp_path)).predictions)
    noise = df.filter(pl.col("variant") == "input_noise").sort("split", "sample_id")
    raw = df.filter(pl.col("variant") == "raw").sort("split", "sample_id")
    assert noise["y_true"].to_list() == raw["y_true"].to_list()
    assert noise["input_noise_sd"].min() > 0 and noise["probs"].null_count() == 4
    assert (noise["input_noise_q05"] <= noise["y_pred"]).all()


def test_search_trials_compute_no_uncertainty(cohort: Cohort, spec_of: Any, tmp_path: Path) -> None:
    spec = spec_of(
        cohort, model=DROPOUT_MODEL, evaluation={"uncertainty": UNCERTAINTY}, stage="search"
    )
    df = _frame(run_trial(spec, cohort, TrialContext(tmp_path)).predictions)
    assert df["variant"].unique().to_list() == ["raw"] and df["split"].unique().to_list() == ["val"]


@pytest.fixture
def plain_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    module = tmp_path / "plain_net_plugin.py"
    module.write_text(
        textwrap.dedent(
            """
            from torch import nn

            def build(in_channels, out_channels, spatial_size):
                n = in_channels
                for s in spatial_size:
                    n *= s
                return nn.Sequential(nn.Flatten(), nn.Linear(n, out_channels))
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "plain_net_plugin", raising=False)
    return "plain_net_plugin:build"


def test_mc_dropout_of_a_plugin_without_dropout_is_refused(
    cohort: Cohort, spec_of: Any, tmp_path: Path, plain_plugin: str
) -> None:
    spec = spec_of(
        cohort,
        model={"arch": "plain", "params": {}},
        plugins={"plain": plain_plugin},
        evaluation={"uncertainty": {"mc_dropout": {"draws": 4}}},
    )
    with pytest.raises(SuiteError, match="no dropout layer"):
        run_trial(spec, cohort, TrialContext(tmp_path))


def test_calibration_alone_on_a_multiclass_task(
    cohort: Cohort, spec_of: Any, tmp_path: Path
) -> None:
    spec = spec_of(
        cohort,
        task={"type": "classification", "label": "grade"},
        evaluation={"uncertainty": {"calibration": ["temperature"]}},
    )
    df = _frame(run_trial(spec, cohort, TrialContext(tmp_path)).predictions)
    assert sorted(set(df["variant"])) == ["calibrated", "raw"]
    calibrated = df.filter(pl.col("variant") == "calibrated").sort("split", "sample_id")
    raw = df.filter(pl.col("variant") == "raw").sort("split", "sample_id")
    assert calibrated["y_pred"].to_list() == raw["y_pred"].to_list()  # T keeps the argmax
    assert all(sum(p) == pytest.approx(1.0) and len(p) == 3 for p in calibrated["probs"])
    assert calibrated["score"].null_count() == calibrated.height
