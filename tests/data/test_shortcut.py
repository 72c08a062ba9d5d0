"""The shortcut option of the synthetic generator: a label-correlated marker outside the head."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import polars as pl
import pytest
import torch

from raybench.data import generate_cohort, synthetic_table
from raybench.data.fingerprint import synthetic_identity
from raybench.data.shortcut import marker_box
from raybench.errors import DataError
from raybench.plan.config import ExplanationMethodConfig
from raybench.suite.schema import Shortcut, SyntheticParams
from raybench.training.explain import attribute, localisation
from raybench.training.explain_checks import choose_threshold, segmentation_scores

SHAPE = (16, 16, 16)
PLAIN = SyntheticParams(sites=2, subjects=8, shape=SHAPE, effect=1.5, seed=3)
MARKED = PLAIN.model_copy(
    update={"shortcut": Shortcut(sites=["site01"], ad_rate=1.0, cn_rate=0.0, strength=3.0)}
)


def _volume(path: Path) -> np.ndarray:
    return np.ascontiguousarray(nib.load(path).dataobj, dtype=np.float32)


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.DataFrame, pl.DataFrame]:
    root = tmp_path_factory.mktemp("shortcut")
    tables = []
    for name, params in (("plain", PLAIN), ("marked", MARKED)):
        manifest = generate_cohort(root / name, params)
        table = pl.read_csv(manifest, separator="\t")
        tables.append(table.with_columns(pl.col("image", "mask").map_elements(
            lambda p, m=manifest: str(m.parent / p), return_dtype=pl.String)))  # fmt: skip
    return tables[0], tables[1]


def test_no_shortcut_keeps_the_identity_of_earlier_cohorts() -> None:
    assert "shortcut" not in synthetic_identity(PLAIN)["params"]
    assert synthetic_identity(MARKED)["params"]["shortcut"]["sites"] == ["site01"]
    assert "shortcut" not in synthetic_table(PLAIN, "/c").columns


def test_the_marker_goes_with_the_label_at_its_sites_only_and_nothing_else_changes(
    cohorts: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    plain, marked = cohorts
    expected = (marked["site"] == "site01") & (marked["diagnosis"] == "AD")
    assert marked["shortcut"].cast(pl.Boolean).to_list() == expected.to_list()
    assert expected.any() and (~expected).any()
    box = marker_box(SHAPE, MARKED.shortcut.size)
    for a, b in zip(plain.iter_rows(named=True), marked.iter_rows(named=True), strict=True):
        before, after = _volume(a["image"]), _volume(b["image"])
        assert np.array_equal(_volume(a["mask"]), _volume(b["mask"]))
        outside = np.ones(SHAPE, dtype=bool)
        outside[box] = False
        assert np.array_equal(before[outside], after[outside])  # the same image elsewhere
        assert (after[box] > before[box] + 1.0).all() == bool(b["shortcut"])
        assert not _volume(a["mask"])[box].any()  # far from every lesion
        assert before[box].mean() < 0.2  # outside the head: background noise only


def test_the_marker_stays_outside_the_head_at_its_largest() -> None:
    from raybench.data.phantom import HEAD_RADII_MM, Grid

    grid = Grid((64, 64, 64))
    box = marker_box(grid.shape, 0.15)
    corner = grid.coords[(slice(None), *box)]
    # a head 20% larger than the population ellipsoid still misses the cube
    radius = np.sqrt(((corner / (1.2 * HEAD_RADII_MM[:, None, None, None])) ** 2).sum(0))
    assert radius.min() > 1.0


def test_unknown_shortcut_sites_are_an_error() -> None:
    bad = PLAIN.model_copy(update={"shortcut": Shortcut(sites=["site07"])})
    with pytest.raises(DataError, match=r"shortcut.sites=\['site07'\]"):
        synthetic_table(bad, "/c")


class RegionMean(torch.nn.Module):
    """A hand-built network whose positive logit is the mean intensity inside ``region``."""

    def __init__(self, region: np.ndarray) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 1, kernel_size=1, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
        weights = torch.as_tensor(region, dtype=torch.float32) / float(region.sum())
        self.register_buffer("weights", weights[None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (self.conv(x) * self.weights).sum(dim=(1, 2, 3, 4))
        return torch.stack([torch.zeros_like(score), score], dim=1)


# Grad-CAM is left out: on a one-layer network its map is the layer's activation, the image
# itself, whatever the network reads (the degenerate case the randomisation check catches).
@pytest.mark.parametrize("method", ["gradient", "smoothgrad", "integrated_gradients"])
def test_a_network_on_the_shortcut_scores_badly_against_the_lesion_mask(
    cohorts: tuple[pl.DataFrame, pl.DataFrame], method: str
) -> None:
    """Known truth: both networks separate AD from CN at site01; the one reading the marker is
    told apart by localisation and weakly supervised segmentation, whatever the method."""
    _, marked = cohorts
    ad = marked.filter(pl.col("shortcut") == 1).row(0, named=True)
    image, mask = _volume(ad["image"]), _volume(ad["mask"]) > 0
    x = torch.as_tensor(image)[None, None]
    region = np.zeros(SHAPE, dtype=bool)
    region[marker_box(SHAPE, MARKED.shortcut.size)] = True
    config = ExplanationMethodConfig(method, {"samples": 4})
    scores = {}
    for name, net in (("lesion", RegionMean(mask)), ("shortcut", RegionMean(region))):
        attr = attribute(net, x, 1, config, seed=0)
        threshold, _ = choose_threshold([attr], [mask])
        scores[name] = {
            **localisation(attr, mask),
            **segmentation_scores(attr, mask, threshold, (12.0, 12.0, 12.0)),
        }
    assert scores["lesion"]["auroc"] > 0.9 > 0.6 > scores["shortcut"]["auroc"]
    assert scores["lesion"]["dice"] > 0.5 > 0.05 > scores["shortcut"]["dice"]
    assert scores["shortcut"]["mass_accuracy"] < 0.05
