"""The synthetic generator's training-distribution knobs: site mix and lesion sizes."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from raybench.data.fingerprint import ADDED_PARAMS, canonical_hash, synthetic_fingerprint
from raybench.data.phantom import GENERATOR_VERSION
from raybench.data.synthetic import check_params, synthetic_table
from raybench.errors import DataError
from raybench.suite.schema import SyntheticParams

SMALL = {"subjects": 24, "sites": 3, "shape": (16, 16, 16)}


def test_site_weights_set_the_site_mix_and_scanners_stay_balanced(tmp_path: Path) -> None:
    params = SyntheticParams(**SMALL, scanners_per_site=2, site_weights=[4.0, 1.0, 1.0])
    check_params(params)
    counts = synthetic_table(params, tmp_path).group_by("site", "scanner").len().sort("scanner")
    assert counts["len"].to_list() == [8, 8, 2, 2, 2, 2]  # 24 x (4, 1, 1) / 6, halved


def test_lesion_scale_grows_the_lesions_and_nothing_else(tmp_path: Path) -> None:
    base = synthetic_table(SyntheticParams(**SMALL), tmp_path)
    big = synthetic_table(SyntheticParams(**SMALL, lesion_scale=1.5), tmp_path)
    ad = pl.col("diagnosis") == "AD"
    assert big.filter(ad)["lesion_volume"].mean() > 1.4 * base.filter(ad)["lesion_volume"].mean()
    assert big.drop("lesion_volume").equals(base.drop("lesion_volume"))


def test_defaults_keep_the_fingerprints_of_earlier_cohorts() -> None:
    params = SyntheticParams(**SMALL)
    dump = params.model_dump(mode="json", exclude=set(ADDED_PARAMS))  # the parameters of version 1
    before = {"generator": "raybench.synthetic", "version": GENERATOR_VERSION, "params": dump}
    assert synthetic_fingerprint(params) == canonical_hash(before)
    assert synthetic_fingerprint(SyntheticParams(**SMALL, lesion_scale=1.2)) != canonical_hash(
        before
    )


@pytest.mark.parametrize(
    ("weights", "message"),
    [([1.0, 1.0], "2 weight\\(s\\) for sites=3"), ([40.0, 1.0, 1.0], "fewer subjects than")],
)
def test_bad_site_weights_are_refused(weights: list[float], message: str) -> None:
    with pytest.raises(DataError, match=message):
        check_params(SyntheticParams(**SMALL, scanners_per_site=2, site_weights=weights))
