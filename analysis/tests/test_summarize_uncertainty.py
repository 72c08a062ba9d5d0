"""summarize reads the raw variant for its model tables and adds issue 9's tables per variant."""

from __future__ import annotations

import polars as pl
import pytest
import raybench_analysis as ra


@pytest.fixture(scope="module")
def predictions() -> pl.DataFrame:
    preds = ra.simulate_uncertainty(n_sites=3, subjects_per_site=12, n_seeds=2, seed=1)
    temps = ra.fit_temperature(preds)
    return pl.concat([preds, ra.apply_temperature(preds, temps)], how="diagonal_relaxed")


def test_model_tables_read_the_raw_variant_only(predictions: pl.DataFrame) -> None:
    raw = predictions.filter(pl.col("variant") == "raw")
    both = ra.summarize({"predictions": predictions}, n_boot=100)
    only_raw = ra.summarize({"predictions": raw}, n_boot=100)
    # reference: the summary of the raw rows alone (the calibrated copies are not pooled in)
    assert both["models"].equals(only_raw["models"])
    assert {"uncertainty_calibration", "selective", "conformal"} <= set(both)
    assert not {"uncertainty_calibration", "selective", "conformal"} & set(only_raw)
    variants = set(both["uncertainty_calibration"]["variant"])
    assert variants == {"raw", "calibrated"} == set(both["conformal"]["variant"])
    assert set(both["conformal"]["site"]) == set(predictions["site"])
