"""Preprocessing on real brain geometry: the MNI152 template shipped inside nilearn (no download).

The template (1 mm, 197 × 233 × 189, RAS) and its grey-matter probability map make a small cohort
with simulated atrophy: subject ``i`` has the grey-matter intensity lowered by ``a_i`` times the
grey-matter probability (Alzheimer-like cortical thinning seen as lower GM signal). One subject is
stored in LPS orientation (x axis reversed in both the voxels and the affine): the same anatomy,
which preprocessing must map to the same array. nilearn is a test-only dependency (the ``dev``
extra); the module is skipped without it.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from raybench.cli.main import app
from raybench.data import read_manifest
from raybench.data.cohort import Cohort
from raybench.data.preprocess import (
    Preprocess,
    PreprocessConfig,
    header_shape,
    input_geometry,
    preprocess_for,
)
from raybench.training.cache import VolumeCache

datasets = pytest.importorskip("nilearn.datasets")

ATROPHY = (0.0, 0.1, 0.25, 0.4)
MNI_SHAPE = (197, 233, 189)


def _lps(image: nib.Nifti1Image) -> nib.Nifti1Image:
    """The same anatomy with the x axis stored right-to-left (voxels and affine reversed)."""
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1.0, image.shape[0] - 1
    return nib.Nifti1Image(np.asarray(image.dataobj)[::-1], image.affine @ flip)


@pytest.fixture(scope="module")
def mni_cohort(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    root = tmp_path_factory.mktemp("mni")
    template = datasets.load_mni152_template(resolution=1)
    gm = datasets.load_mni152_gm_template(resolution=1).get_fdata(dtype=np.float32)
    t1 = 1000.0 * template.get_fdata(dtype=np.float32)  # stored in [0, 1]: as int16 scanner units
    gm = gm / max(float(gm.max()), 1.0)
    rows = []
    for i, a in enumerate(ATROPHY):
        image = nib.Nifti1Image((t1 * (1.0 - a * gm)).astype(np.int16), template.affine)
        stored = _lps(image) if i == len(ATROPHY) - 1 else image
        name = f"sub-{i:02d}_T1w.nii"  # uncompressed: the test is about geometry, not gzip
        nib.save(stored, root / name)
        rows.append(
            {
                "image": name,
                "label": "AD" if a >= 0.25 else "CN",
                "subject_id": f"sub-{i:02d}",
                "session_id": "ses-1",
                "scanner": "mni",
                "site": "mni",
            }
        )
    # the LPS subject's RAS twin, for the orientation check (not part of the cohort)
    twin = nib.Nifti1Image((t1 * (1.0 - ATROPHY[-1] * gm)).astype(np.int16), template.affine)
    nib.save(twin, root / "twin_T1w.nii")
    pl.DataFrame(rows).write_csv(root / "mni.tsv", separator="\t")
    return read_manifest(root / "mni.tsv", name="mni")


def _images(cohort: Cohort) -> list[str]:
    return cohort.table.sort("sample_id")["image"].to_list()


@pytest.mark.parametrize(
    "config",
    [
        PreprocessConfig(spacing=(2.0, 2.0, 2.0)),
        PreprocessConfig(spacing=(3.0, 2.5, 4.0), orientation="LPS"),
        PreprocessConfig(orientation="PIR"),
    ],
    ids=["2mm-RAS", "anisotropic-LPS", "1mm-PIR"],
)
def test_header_shapes_are_those_of_the_transforms(mni_cohort: Cohort, config) -> None:
    chain = Preprocess((1, 1, 1), config).transforms(common_grid=False)
    for path in (_images(mni_cohort)[0], _images(mni_cohort)[-1]):  # stored RAS, stored LPS
        header = nib.load(path)
        predicted, spacing = header_shape(header.shape, header.affine, config)
        out = chain({"image": path})["image"]
        assert tuple(out.shape[1:]) == predicted
        affine = np.asarray(out.affine)
        assert np.allclose(np.sqrt((affine[:3, :3] ** 2).sum(axis=0)), spacing)
        assert "".join(nib.aff2axcodes(affine)) == config.orientation


def test_preprocessing_at_2mm_gives_one_grid_in_ras_and_is_deterministic(
    mni_cohort: Cohort, tmp_path: Path
) -> None:
    config = PreprocessConfig(spacing=(2.0, 2.0, 2.0), crop_foreground=True)
    pre = preprocess_for(mni_cohort, with_mask=False, config=config)
    # the first image's head, cropped at 2 mm: well inside the 99 × 117 × 95 field of view
    assert all(40 < s <= f for s, f in zip(pre.spatial_size, (99, 117, 95), strict=True))
    rows = mni_cohort.table.sort("sample_id").to_dicts()
    cache = VolumeCache(tmp_path / "a", mni_cohort, pre)
    arrays = [cache.load(r)["image"] for r in rows]
    assert {a.shape for a in arrays} == {(1, *pre.spatial_size)} and arrays[0].dtype == np.float32
    inside = arrays[0][arrays[0] != 0]  # z-score over the non-zero voxels
    assert abs(float(inside.mean())) < 1e-3 and abs(float(inside.std()) - 1) < 1e-3
    # deterministic: a fresh computation (no cache) gives the same bytes
    assert np.array_equal(pre.transforms()(dict(rows[0]))["image"], arrays[0])
    # geometry of the output: 2 mm voxels, RAS axes
    out = pre.transforms(common_grid=False)({"image": rows[0]["image"]})["image"]
    affine = np.asarray(out.affine)
    assert np.allclose(np.abs(np.diag(affine)[:3]), 2.0)
    assert nib.aff2axcodes(affine) == ("R", "A", "S")
    # the LPS-stored subject is the same anatomy as its RAS twin after preprocessing
    twin = dict(rows[-1], image=str(Path(rows[-1]["image"]).with_name("twin_T1w.nii")))
    assert np.array_equal(pre.transforms()(twin)["image"], arrays[-1])


def test_plan_shows_the_input_shape_and_memory_per_sample(
    mni_cohort: Cohort, tmp_path: Path
) -> None:
    manifest = Path(mni_cohort.source)
    geometry = input_geometry(mni_cohort, PreprocessConfig(spacing=(2.0, 2.0, 2.0)))
    assert geometry.shape == (99, 117, 95) and geometry.how == "header"
    assert geometry.bytes_per_sample == 99 * 117 * 95 * 4
    full = input_geometry(mni_cohort, None)
    assert full.shape == MNI_SHAPE and full.spacing == pytest.approx((1.0, 1.0, 1.0))
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        f"""\
name: mni
preprocess: {{spacing: 2.0}}
datasets: [{{name: mni, source: manifest, path: {manifest}}}]
task: {{type: classification, label: label, positive: AD}}
models: [{{name: m, arch: classifier}}]
validation: {{outer: {{strategy: group_kfold, k: 2}}, inner: null}}
"""
    )
    result = CliRunner().invoke(app, ["plan", str(suite)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "99×117×95" in result.output and "2×2×2" in result.output
    assert "4.2 MiB" in result.output  # 99 * 117 * 95 float32 voxels
