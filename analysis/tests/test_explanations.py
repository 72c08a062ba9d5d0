"""Explanation summaries: nested estimand, hierarchical intervals, paired comparisons."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from raybench_analysis import (
    bootstrap,
    compare_methods,
    compare_models,
    explanations,
    map_stability,
    randomisation_check,
    weak_segmentation,
)
from raybench_analysis._frames import AnalysisError


def _table(effect: float = 0.2, nan_rows: int = 0, seed: int = 0) -> pl.DataFrame:
    """2 models x 2 methods x 2 folds x 2 seeds x 6 subjects; gradcam beats gradient by `effect`."""
    rng = np.random.default_rng(seed)
    rows = []
    for fold in (0, 1):
        for s in range(6):
            subject = f"f{fold}-s{s}"
            base = rng.normal(0.6, 0.1)
            for model, shift in (("cnn", 0.0), ("resnet", 0.05)):
                for seed_ in (0, 1):
                    for method, gain in (("gradcam", effect), ("gradient", 0.0)):
                        for metric in ("auroc", "deletion_auc"):
                            value = base + shift + gain + rng.normal(0, 0.02)
                            rows.append(
                                {
                                    "trial_id": f"{model}-{fold}-{seed_}",
                                    "dataset": "syn",
                                    "model": model,
                                    "outer_fold": fold,
                                    "seed": seed_,
                                    "sample_id": subject + "-ses1",
                                    "subject_id": subject,
                                    "site": f"site{s % 2}",
                                    "method": method,
                                    "metric": metric,
                                    "value": value,
                                }
                            )
    frame = pl.DataFrame(rows)
    if nan_rows:
        idx = pl.Series(range(frame.height)).is_in(list(range(nan_rows)))
        frame = frame.with_columns(pl.when(idx).then(math.nan).otherwise("value").alias("value"))
    return frame


def test_estimate_is_the_nested_mean_and_the_interval_comes_from_bootstrap() -> None:
    frame = _table()
    out = explanations(frame, metrics="auroc", n_boot=300)
    assert out.height == 4  # 2 models x 2 methods
    row = out.filter((pl.col("model") == "cnn") & (pl.col("method") == "gradcam")).row(
        0, named=True
    )
    cell = frame.filter(
        (pl.col("model") == "cnn") & (pl.col("method") == "gradcam") & (pl.col("metric") == "auroc")
    )
    by_fold = cell.group_by("outer_fold", "seed").agg(pl.col("value").mean())
    nested = by_fold.group_by("outer_fold").agg(pl.col("value").mean())["value"].mean()
    assert row["estimate"] == pytest.approx(nested)
    direct = bootstrap(cell, value="value", n_boot=300, average_over=("outer_fold", "seed"))
    assert row["ci_low"] == pytest.approx(direct["ci_low"][0])
    assert row["ci_low"] < row["estimate"] < row["ci_high"]
    assert row["higher_is_better"] and row["n_undefined"] == 0


def test_nan_values_are_counted_and_left_out() -> None:
    out = explanations(_table(nan_rows=1), metrics="auroc", n_boot=200)
    assert out["n_undefined"].sum() == 1
    assert out["estimate"].is_finite().all()
    deletion = explanations(_table(), metrics="deletion_auc", n_boot=200)
    assert not deletion["higher_is_better"].any()


def test_compare_methods_finds_a_real_difference_and_not_a_null_one() -> None:
    out = compare_methods(_table(effect=0.2), metric="auroc", n_boot=500)
    assert set(out["model"]) == {"cnn", "resnet"}
    assert (out["method_a"] == "gradcam").all() and (out["method_b"] == "gradient").all()
    assert (out["estimate"] - 0.2).abs().max() < 0.03
    assert (out["p_adjusted"] < 0.05).all()
    null = compare_methods(_table(effect=0.0, seed=3), metric="auroc", n_boot=500)
    assert (null["ci_low"] < 0).all() and (null["ci_high"] > 0).all()


def test_compare_models_is_paired_within_a_method() -> None:
    out = compare_models(_table(), metric="auroc", n_boot=300)
    assert set(out["method"]) == {"gradcam", "gradient"}
    assert out["estimate"].to_list() == pytest.approx([-0.05, -0.05], abs=0.02)


def test_unknown_metric_is_an_error() -> None:
    with pytest.raises(AnalysisError, match="not in the explanations table"):
        explanations(_table(), metrics="dice")


def _maps(noise: float, n_samples: int = 8, seeds: int = 3, size: int = 400) -> pl.DataFrame:
    """Maps of one sample across seeds: a shared pattern plus seed noise of SD ``noise``."""
    rng = np.random.default_rng(5)
    rows = []
    for i in range(n_samples):
        pattern = rng.random(size)
        for s in range(seeds):
            rows.append(
                {
                    "dataset": "syn",
                    "model": "cnn",
                    "method": "gradcam",
                    "outer_fold": i % 2,
                    "seed": s,
                    "sample_id": f"x{i}",
                    "subject_id": f"x{i}",
                    "map": (pattern * (noise < 10) + noise * rng.random(size)).tolist(),
                }
            )
    return pl.DataFrame(rows)


def test_map_stability_is_high_for_stable_maps_and_chance_for_unrelated_ones() -> None:
    stable = map_stability(_maps(noise=0.05), top=0.1, n_boot=300)
    assert stable.filter(pl.col("quantity") == "spearman")["estimate"][0] > 0.95
    assert stable["n_pairs"].to_list() == [3.0, 3.0]  # 3 seeds: 3 pairs per sample
    unrelated = map_stability(_maps(noise=100.0), top=0.1, n_boot=300)
    rho = unrelated.filter(pl.col("quantity") == "spearman").row(0, named=True)
    assert rho["ci_low"] < 0 < rho["ci_high"]
    overlap = unrelated.filter(pl.col("quantity") == "top_overlap")["estimate"][0]
    assert overlap == pytest.approx(0.1, abs=0.05)  # chance overlap of two random top-10% sets
    with pytest.raises(AnalysisError, match="fraction"):
        map_stability(_maps(0.1), top=0.0)


def _checks(seed: int = 0) -> pl.DataFrame:
    """The check rows of 2 folds x 2 seeds x 12 subjects on 2 sites, one model: randomisation
    (gradcam changes, integrated_gradients keeps its map, gradient in between), Dice (lower at
    site1) with its threshold, and stability under two perturbations (noise keeps maps more)."""
    rng = np.random.default_rng(seed)
    rows = []
    for fold in (0, 1):
        for s in range(12):
            subject = f"f{fold}-s{s}"
            site = f"site{s % 2}"
            for seed_ in (0, 1):
                common = {"dataset": "syn", "model": "cnn", "outer_fold": fold, "seed": seed_,
                          "sample_id": subject, "subject_id": subject, "site": site,
                          "trial_id": f"cnn-{fold}-{seed_}"}  # fmt: skip
                for method, rho in (("gradcam", 0.05), ("integrated_gradients", 0.9),
                                    ("gradient", 0.5)):  # fmt: skip
                    value = rho + rng.normal(0, 0.03)
                    rows.append({**common, "method": method, "perturbation": "none",
                                 "metric": "randomisation_spearman", "value": value})  # fmt: skip
                dice = (0.7 if site == "site0" else 0.2) + rng.normal(0, 0.05)
                threshold = 0.3 + 0.1 * fold
                for metric, value in (("dice", dice), ("hd95", 10 * (1 - dice))):
                    rows.append({**common, "method": "gradcam", "perturbation": "none",
                                 "metric": metric, "value": value,
                                 "threshold": threshold})  # fmt: skip
                for pid, rho in (("noise", 0.9), ("motion", 0.4)):
                    rows.append({**common, "method": "gradcam", "perturbation": pid,
                                 "metric": "perturbation_spearman",
                                 "value": rho + rng.normal(0, 0.03)})  # fmt: skip
    return pl.DataFrame(rows)


def test_randomisation_check_flags_a_method_whose_maps_do_not_change() -> None:
    # Adebayo et al. (2018): a map that survives randomising the weights fails the check
    out = randomisation_check(_checks(), n_boot=300)
    status = dict(out.select("method", "status").rows())
    assert status == {"gradcam": "passes", "gradient": "inconclusive",
                      "integrated_gradients": "fails"}  # fmt: skip
    assert not out["higher_is_better"].any() and (out["threshold"] == 0.5).all()
    strict = randomisation_check(_checks(), threshold=0.95, n_boot=300)
    assert set(strict["status"]) == {"passes"}
    with pytest.raises(AnalysisError, match="threshold"):
        randomisation_check(_checks(), threshold=2.0)


def test_weak_segmentation_overall_and_per_site_with_the_chosen_thresholds() -> None:
    frame = _checks()
    overall = weak_segmentation(frame, n_boot=300)
    dice = overall.filter(pl.col("metric") == "dice").row(0, named=True)
    assert dice["estimate"] == pytest.approx(0.45, abs=0.03)
    assert dice["threshold_mean"] == pytest.approx(0.35)
    assert (dice["threshold_min"], dice["threshold_max"]) == pytest.approx((0.3, 0.4))
    per_site = weak_segmentation(frame, levels=["site", "subject_id"], per_site=True, n_boot=300)
    by_site = dict(per_site.filter(pl.col("metric") == "dice").select("site", "estimate").rows())
    assert by_site["site0"] == pytest.approx(0.7, abs=0.03)
    assert by_site["site1"] == pytest.approx(0.2, abs=0.03)
    assert per_site.filter(pl.col("metric") == "hd95")["higher_is_better"].to_list() == [
        False,
        False,
    ]
    with pytest.raises(AnalysisError, match="no dice/hd95 rows"):
        weak_segmentation(_table())


def test_stability_under_perturbations_is_summarised_per_perturbation() -> None:
    out = explanations(_checks(), metrics="perturbation_spearman", n_boot=300)
    assert dict(out.select("perturbation", "estimate").rows()) == pytest.approx(
        {"motion": 0.4, "noise": 0.9}, abs=0.02
    )
    # a null perturbation (files written before the column existed) reads as the clean image
    legacy = _table().with_columns(perturbation=pl.lit(None, dtype=pl.String))
    assert "perturbation" not in explanations(legacy, metrics="auroc", n_boot=200).columns
