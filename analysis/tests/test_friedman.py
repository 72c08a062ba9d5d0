"""Tests of raybench_analysis.friedman against Demšar (2006) Table 6 and scipy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from raybench_analysis.friedman import friedman
from scipy import stats

TABLE6 = Path(__file__).parent / "reference" / "demsar2006_table6.csv"


@pytest.fixture
def table6() -> pl.DataFrame:
    return pl.read_csv(TABLE6)


def test_demsar_table6_as_printed(table6: pl.DataFrame) -> None:
    # Demšar (2006), Table 6 and section 3.2.2. The paper breaks the one tie of "voting"
    # (C4.5+cf = C4.5+m+cf = 0.975) as ranks 2 and 3; reproduce that by nudging C4.5+cf.
    printed = table6.with_columns(
        pl.when(pl.col("dataset") == "voting")
        .then(pl.col("C4.5+cf") + 1e-6)
        .otherwise(pl.col("C4.5+cf"))
        .alias("C4.5+cf")
    )
    res = friedman(printed, ties="none")
    ranks = dict(zip(res.ranks["model"], res.ranks["mean_rank"], strict=True))
    # Table 6, last row: average ranks 3.143, 2.000, 2.893, 1.964
    assert ranks["C4.5"] == pytest.approx(3.143, abs=5e-4)
    assert ranks["C4.5+m"] == pytest.approx(2.000, abs=5e-4)
    assert ranks["C4.5+cf"] == pytest.approx(2.893, abs=5e-4)
    assert ranks["C4.5+m+cf"] == pytest.approx(1.964, abs=5e-4)
    chi2, f_f = res.test["statistic"].to_list()
    # Section 3.2.2: chi2_F = 9.28, F_F = 3.69 with (3, 39) df
    assert chi2 == pytest.approx(9.28, abs=0.005)
    assert f_f == pytest.approx(3.69, abs=0.005)
    assert res.test["df1"].to_list() == [3.0, 3.0]
    assert res.test["df2"][1] == 39.0
    # "The critical value of F(3, 39) for alpha = 0.05 is 2.85, so we reject": p < 0.05
    assert res.test["p_value"][1] < 0.05
    assert stats.f.ppf(0.95, 3, 39) == pytest.approx(2.85, abs=0.005)
    # Nemenyi: q_0.05 = 2.569, CD = 1.25; "even the best and worst differ by less than that"
    assert res.critical_difference == pytest.approx(1.25, abs=0.005)
    assert not res.pairwise["significant"].any()
    assert res.cliques["clique"].n_unique() == 1
    # At p = 0.10: CD = 2.291 * sqrt(20/84) = 1.12; C4.5 worse than C4.5+m and C4.5+m+cf, and two
    # groups (C4.5+m+cf, C4.5+m, C4.5+cf) and (C4.5+cf, C4.5) as in Figure 1(a)
    res10 = friedman(printed, ties="none", alpha=0.10)
    assert res10.critical_difference == pytest.approx(1.12, abs=0.005)
    sig = {frozenset((r["model_a"], r["model_b"])) for r in res10.pairwise.iter_rows(named=True)
           if r["significant"]}  # fmt: skip
    assert sig == {frozenset(("C4.5", "C4.5+m")), frozenset(("C4.5", "C4.5+m+cf"))}
    groups = {frozenset(g["model"]) for g in res10.cliques.partition_by("clique", as_dict=False)}
    assert groups == {frozenset({"C4.5+m+cf", "C4.5+m", "C4.5+cf"}), frozenset({"C4.5+cf", "C4.5"})}


def test_demsar_table6_average_ranks_for_ties(table6: pl.DataFrame) -> None:
    # With average ranks for the "voting" tie (our stated convention) C4.5+cf and C4.5+m+cf move
    # by 0.5/14 from the printed ranks: 2.893 + 0.0357 and 1.964 - 0.0357.
    res = friedman(table6, ties="none")
    ranks = dict(zip(res.ranks["model"], res.ranks["mean_rank"], strict=True))
    assert ranks["C4.5+cf"] == pytest.approx(41 / 14, abs=1e-12)
    assert ranks["C4.5+m+cf"] == pytest.approx(27 / 14, abs=1e-12)


def test_matches_scipy_friedmanchisquare_with_ties(table6: pl.DataFrame) -> None:
    cols = [c for c in table6.columns if c != "dataset"]
    # scipy.stats.friedmanchisquare(*columns) applies the tie correction (as R friedman.test)
    expected = stats.friedmanchisquare(*[table6[c].to_numpy() for c in cols])
    res = friedman(table6)
    assert res.test["statistic"][0] == pytest.approx(expected.statistic, rel=1e-12)
    assert res.test["p_value"][0] == pytest.approx(expected.pvalue, rel=1e-10)


def test_random_matrices_match_scipy() -> None:
    rng = np.random.default_rng(3)
    for _ in range(5):
        mat = rng.normal(size=(9, 5)).round(1)  # rounding creates ties
        wide = pl.DataFrame({f"m{j}": mat[:, j] for j in range(5)})
        expected = stats.friedmanchisquare(*mat.T)
        got = friedman(wide, higher_is_better=False).test
        # scipy.stats.friedmanchisquare: same statistic whatever the ranking direction
        assert got["statistic"][0] == pytest.approx(expected.statistic, rel=1e-10)


def test_long_and_pandas_input_equal_wide(table6: pl.DataFrame) -> None:
    long = table6.unpivot(index="dataset", variable_name="model", value_name="value")
    a, b = friedman(table6), friedman(long)
    assert a.test.equals(b.test)
    assert sorted(a.ranks["mean_rank"].to_list()) == sorted(b.ranks["mean_rank"].to_list())
    pd = pytest.importorskip("pandas")
    c = friedman(pd.DataFrame(table6.to_dict(as_series=False)))
    assert c.test.equals(a.test)


def test_hand_computed_no_ties() -> None:
    # Three models in the same order on four datasets: ranks 1, 2, 3;
    # chi2 = 12*4/(3*4) * (1 + 4 + 9 - 3*16/4) = 8, p = exp(-4); F_F is infinite (perfect order)
    wide = pl.DataFrame({"A": [0.9, 0.8, 0.7, 0.9], "B": [0.5, 0.5, 0.4, 0.5],
                         "C": [0.1, 0.2, 0.3, 0.1]})  # fmt: skip
    res = friedman(wide)
    assert res.test["statistic"][0] == pytest.approx(8.0, abs=1e-12)
    assert res.test["p_value"][0] == pytest.approx(np.exp(-4), rel=1e-12)
    assert res.test["statistic"][1] == float("inf")
    assert res.ranks["model"].to_list() == ["A", "B", "C"]
    lower = friedman(wide, higher_is_better=False)
    assert lower.ranks["model"].to_list() == ["C", "B", "A"]


def test_output_columns_fixed() -> None:
    wide = pl.DataFrame({"a": [1.0, 2.0, 3.0], "b": [2.0, 1.0, 0.0]})
    res = friedman(wide)
    cols = ["test", "statistic", "df1", "df2", "p_value", "critical_difference", "alpha"]
    cols += ["n_datasets", "n_methods", "ties", "method", "unit"]
    assert res.test.columns == cols
    assert set(res.test["unit"]) == {"dataset"}
    assert set(res.tables()) == {
        "friedman_test",
        "friedman_ranks",
        "nemenyi_pairwise",
        "cd_cliques",
    }


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (pl.DataFrame({"a": [1.0, None], "b": [1.0, 2.0]}), "missing or non-finite score"),
        (pl.DataFrame({"a": [1.0, 2.0]}), "at least 2 datasets and 2 models"),
        (pl.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]}), "not numeric"),
        (pl.DataFrame({"dataset": ["d", "d"], "model": ["a", "a"], "value": [1.0, 2.0]}),
         "2 rows for dataset='d'"),
    ],
)  # fmt: skip
def test_bad_input_raises(frame: pl.DataFrame, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        friedman(frame)
