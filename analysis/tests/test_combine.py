"""Several results directories as one: pairing, unpaired differences and their coverage."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from raybench_analysis import (
    bootstrap,
    bootstrap_replicates,
    combine,
    compare,
    compare_across,
    summarize,
    unpaired_difference,
)
from raybench_analysis._frames import AnalysisError
from raybench_analysis.combine import SOURCE_COLUMN, pairing
from raybench_analysis.simulate import simulate_predictions, write_results_dir
from scipy import stats

pytestmark = pytest.mark.filterwarnings("ignore:.*replicates left")


def _run(seed: int, models: dict[str, float], n_folds: int = 2, tag: str = "") -> pl.DataFrame:
    """Clean test predictions of a small simulated run; ``tag`` renames its samples (others)."""
    run = simulate_predictions(
        n_sites=4, subjects_per_site=8, n_seeds=2, n_folds=n_folds, seed=seed, models=models
    )
    frame = run.predictions
    if tag:
        frame = frame.with_columns(
            pl.col("sample_id") + tag, pl.col("subject_id") + tag, pl.col("site") + tag
        )
    return frame


def _refolded(frame: pl.DataFrame, model: str, rename: str) -> pl.DataFrame:
    """``model``'s rows as another model tested on the same samples in 3 other folds."""
    subjects = frame["subject_id"].unique().sort()
    folds = pl.DataFrame({"subject_id": subjects, "new_fold": np.arange(len(subjects)) % 3})
    return (
        frame.filter(pl.col("model") == model)
        .join(folds, on="subject_id")
        .with_columns(outer_fold=pl.col("new_fold").cast(pl.Int64), model=pl.lit(rename))
        .drop("new_fold")
    )


@pytest.fixture(scope="module")
def mixed() -> pl.DataFrame:
    """cnn, vit (same folds), cnn_refold (same samples, other folds), other (other subjects)."""
    base = _run(1, {"cnn": 1.5, "vit": 1.0})
    return pl.concat(
        [base, _refolded(base, "cnn", "cnn_refold"), _run(2, {"other": 1.2}, tag="-b")],
        how="diagonal_relaxed",
    )


def test_pairing_is_detected_from_the_test_sets(mixed: pl.DataFrame) -> None:
    assert pairing(mixed, "cnn", "vit") == "same folds"
    assert pairing(mixed, "cnn", "cnn_refold") == "same subjects"
    assert pairing(mixed, "cnn", "other") == "unpaired"
    out = compare_across(mixed, "auc", levels=["site", "subject_id"], n_boot=200)
    kinds = {
        frozenset((r["model_a"], r["model_b"])): r["pairing"] for r in out.iter_rows(named=True)
    }
    assert kinds[frozenset(("cnn", "vit"))] == "same folds"
    assert kinds[frozenset(("cnn", "cnn_refold"))] == "same subjects"
    others = {kinds[frozenset((a, "other"))] for a in ("cnn", "cnn_refold", "vit")}
    assert others == {"unpaired"}
    unpaired = out.filter(pl.col("pairing") == "unpaired")
    assert unpaired["method"].str.starts_with("unpaired: difference of independent").all()
    # the t-test exists only for pairs tested on the same folds
    ttest = out.filter(pl.col("method").str.contains("t-test"))
    assert ttest.select("model_a", "model_b").rows() == [("cnn", "vit")]


def test_same_folds_is_compare_itself(mixed: pl.DataFrame) -> None:
    two = mixed.filter(pl.col("model").is_in(["cnn", "vit"]))
    ours = compare_across(two, "auc", levels=["site", "subject_id"], n_boot=200, seed=4)
    theirs = compare(two, "auc", levels=["site", "subject_id"], n_boot=200, seed=4)
    cols = ["estimate", "se", "ci_low", "ci_high", "p_value", "p_adjusted", "method"]
    assert ours.select(cols).rows() == theirs.select(cols).rows()


def test_identical_models_differ_by_exactly_zero(mixed: pl.DataFrame) -> None:
    cnn = mixed.filter(pl.col("model") == "cnn")
    twin = pl.concat([cnn, cnn.with_columns(model=pl.lit("cnn_again"))])
    out = compare_across(twin, "auc", levels=["site", "subject_id"], n_boot=100)
    boot = out.filter(pl.col("method").str.contains("bootstrap")).row(0, named=True)
    assert (boot["estimate"], boot["ci_low"], boot["ci_high"], boot["p_value"]) == (0, 0, 0, 1)


def test_other_folds_difference_is_that_of_the_models_estimates(mixed: pl.DataFrame) -> None:
    part = mixed.filter(pl.col("model").is_in(["cnn", "cnn_refold"]))
    row = compare_across(part, "accuracy", levels=["site", "subject_id"], n_boot=300).row(
        0, named=True
    )
    models = bootstrap(part, metric="accuracy", levels=["site", "subject_id"], by="model",
                       n_boot=50)  # fmt: skip
    est = dict(models.select("model", "estimate").rows())
    # bootstrap(average_over=auto): metric per (fold, seed) cell, seeds then folds averaged
    assert row["estimate"] == pytest.approx(est["cnn"] - est["cnn_refold"], abs=1e-12)
    assert row["method"].startswith("paired cluster bootstrap")
    assert row["ci_low"] < row["estimate"] < row["ci_high"]


def test_unpaired_difference_by_hand() -> None:
    rng = np.random.default_rng(3)
    rep_a, rep_b = 0.8 + 0.02 * rng.standard_normal(400), 0.7 + 0.05 * rng.standard_normal(400)
    out = unpaired_difference(0.8, rep_a, 10, 0.7, rep_b, 6, alpha=0.1)
    # each side's few-cluster se: sd* · sqrt(G/(G − 1)); Welch–Satterthwaite df
    se_a = np.std(rep_a, ddof=1) * math.sqrt(10 / 9)
    se_b = np.std(rep_b, ddof=1) * math.sqrt(6 / 5)
    se = math.hypot(se_a, se_b)
    df = se**4 / (se_a**4 / 9 + se_b**4 / 5)
    half = stats.t.ppf(0.95, df) * se
    assert out["se"] == pytest.approx(se, rel=1e-12)
    assert out["df"] == pytest.approx(df, rel=1e-12)
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((0.1 - half, 0.1 + half), rel=1e-12)
    assert out["p_value"] == pytest.approx(2 * stats.t.sf(0.1 / se, df), rel=1e-12)
    pct = unpaired_difference(0.8, rep_a, 10, 0.7, rep_b, 6, interval="percentile")
    assert (pct["ci_low"], pct["ci_high"]) == pytest.approx(
        tuple(np.quantile(rep_a - rep_b, [0.025, 0.975])), rel=1e-12
    )
    with pytest.raises(AnalysisError, match="interval='wald'"):
        unpaired_difference(0.8, rep_a, 10, 0.7, rep_b, 6, interval="wald")


def test_unpaired_interval_covers_about_95_percent() -> None:
    """Two independent clustered samples with the same mean: the interval covers 0 ~95%."""
    rng = np.random.default_rng(11)
    n_rep, covered = 300, 0
    for r in range(n_rep):
        sides = []
        for g in (12, 16):  # 12 and 16 sites, 5 subjects each, site and subject noise
            site = np.repeat(np.arange(g), 5)
            y = rng.normal(0, 0.5, g)[site] + rng.normal(0, 1.0, 5 * g)
            frame = pl.DataFrame({"site": site, "subject_id": np.arange(5 * g), "y": y})
            reps = bootstrap_replicates(frame, value="y", levels=["site", "subject_id"],
                                        n_boot=200, seed=2 * r + len(sides))  # fmt: skip
            sides.append((float(y.mean()), reps["value"].to_numpy(), g))
        (ea, ra, ga), (eb, rb, gb) = sides
        out = unpaired_difference(ea, ra, ga, eb, rb, gb)
        covered += out["ci_low"] <= 0 <= out["ci_high"]
    assert 0.91 <= covered / n_rep <= 0.985


def _dirs(tmp_path: Path) -> tuple[Path, Path]:
    run = simulate_predictions(n_sites=3, subjects_per_site=6, n_seeds=1, n_folds=2, seed=5,
                               models={"cnn": 1.5, "vit": 1.0})  # fmt: skip
    other = simulate_predictions(n_sites=3, subjects_per_site=6, n_seeds=1, n_folds=2, seed=6,
                                 models={"cnn": 1.2})  # fmt: skip
    preds = other.predictions.with_columns(pl.col("sample_id") + "-x", pl.col("subject_id") + "-x")
    a = write_results_dir(run, tmp_path / "raybench")
    b = write_results_dir(other.__class__(**{**other.__dict__, "predictions": preds}),
                          tmp_path / "lab")  # fmt: skip
    (a / "suite.yaml").write_text("analysis: {hierarchy: [site, subject_id], alpha: 0.05}\n")
    (b / "suite.yaml").write_text("analysis: {hierarchy: [subject_id], alpha: 0.1}\n")
    return a, b


def test_summarize_several_directories(tmp_path: Path) -> None:
    a, b = _dirs(tmp_path)
    s = summarize([a, b], n_boot=100)
    assert s.settings["sources"] == {"raybench": str(a), "lab": str(b)}
    assert s.settings["hierarchy"] == ["site", "subject_id"] and s.settings["alpha"] == 0.05
    assert any("disagree on hierarchy" in n and "first directory's (raybench)" in n
               for n in s.missing)  # fmt: skip
    models = s["models"].select("model", SOURCE_COLUMN).rows()
    assert models == [("lab:cnn", "lab"), ("raybench:cnn", "raybench"), ("vit", "raybench")]
    comp = s["comparisons"]
    assert set(comp.filter(pl.col("model_a") == "lab:cnn")["pairing"]) == {"unpaired"}
    assert comp.filter(pl.col("pairing") == "same folds").height == 2  # bootstrap and t-test
    assert "ranking" not in s and any(n.startswith("ranking") for n in s.missing)
    assert any("tested on different subjects: paired comparison refused" in n for n in s.missing)
    over = summarize([a, b], n_boot=100, alpha=0.1, labels=["ours", "theirs"])
    assert over.settings["alpha"] == 0.1
    assert any("the argument given overrides them" in n for n in over.missing)
    assert set(over["models"]["model"]) == {"theirs:cnn", "ours:cnn", "vit"}


def test_combine_refuses_one_directory_and_bad_labels(tmp_path: Path) -> None:
    a, b = _dirs(tmp_path)
    with pytest.raises(AnalysisError, match="give two or more"):
        combine([a])
    with pytest.raises(AnalysisError, match="one distinct, non-empty label"):
        combine([a, b], labels=["same", "same"])
    twin = combine([a, a])  # the same name twice: parent/name, then -2
    assert list(twin.sources) == [f"{tmp_path.name}/raybench", f"{tmp_path.name}/raybench-2"]


def test_directories_of_two_tasks_are_refused(tmp_path: Path) -> None:
    a, _ = _dirs(tmp_path)
    reg = simulate_predictions(task="regression", n_sites=2, subjects_per_site=4, n_seeds=1,
                               n_folds=2, models={"unet": 0.0})  # fmt: skip
    b = write_results_dir(reg, tmp_path / "reg")
    with pytest.raises(AnalysisError, match="different tasks"):
        combine([a, b])
