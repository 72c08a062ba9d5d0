"""Synthetic generator: real NIfTI with the requested hierarchy, determinism, known effects."""

from __future__ import annotations

import gzip
import json
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError
from scipy import stats

from raybench.data import generate_cohort, read_manifest, synthetic_table
from raybench.data.phantom import HEAD_RADII_MM, LESION_CENTER, LESION_CONTRAST, Grid
from raybench.errors import DataError
from raybench.suite.schema import SyntheticParams


def _load(path: str) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def test_hierarchy_loads_in_nibabel(small_manifest: Path, small_params: SyntheticParams) -> None:
    SMALL = small_params
    table = pl.read_csv(small_manifest, separator="\t", infer_schema=False)
    assert table.height == SMALL.subjects * SMALL.sessions
    assert table["site"].n_unique() == SMALL.sites
    assert table["scanner"].n_unique() == SMALL.sites * SMALL.scanners_per_site
    assert table["subject_id"].n_unique() == SMALL.subjects
    assert set(table.group_by("subject_id").len()["len"].to_list()) == {SMALL.sessions}
    # scanners nest in sites and subjects in scanners
    assert table.group_by("scanner").agg(pl.col("site").n_unique())["site"].max() == 1
    assert table.group_by("subject_id").agg(pl.col("scanner").n_unique())["scanner"].max() == 1
    spacing = 192.0 / np.asarray(SMALL.shape)
    for row in table.iter_rows(named=True):
        for column in ("image", "mask"):
            image = nib.load(small_manifest.parent / row[column])
            assert image.shape == SMALL.shape
            assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
            np.testing.assert_allclose(image.header.get_zooms(), spacing)
            np.testing.assert_allclose(
                image.affine[:3, 3], -spacing * (np.array(SMALL.shape) - 1) / 2
            )
        assert image.get_data_dtype() == np.uint8  # the mask
        assert int(_load(str(small_manifest.parent / row["mask"])).sum()) == float(
            row["lesion_volume"]
        )
    participants = pl.read_csv(small_manifest.parent / "participants.tsv", separator="\t")
    assert participants.height == SMALL.subjects


def test_table_matches_manifest_and_labels_are_balanced(
    small_manifest: Path, small_params: SyntheticParams
) -> None:
    SMALL = small_params
    expected = synthetic_table(SMALL, small_manifest.parent)
    read = read_manifest(small_manifest).table
    assert read.columns == expected.columns
    assert read.equals(expected.with_columns(pl.all().cast(pl.String)))
    assert sorted(expected["diagnosis"].unique()) == ["AD", "CN"]
    per_subject = expected.unique("subject_id")
    assert (per_subject["diagnosis"] == "AD").sum() == round(SMALL.subjects * SMALL.prevalence)
    ages = expected.sort("sample_id").group_by("subject_id", maintain_order=True).agg("age")
    for sessions in ages["age"].to_list():
        assert sessions[1] - sessions[0] == pytest.approx(1.5, abs=0.11)
    ad = expected["diagnosis"] == "AD"
    assert (expected.filter(ad)["lesion_volume"] > 0).all()
    assert (expected.filter(~ad)["lesion_volume"] == 0).all()


def test_two_generations_are_byte_identical(tmp_path: Path) -> None:
    params = SyntheticParams(sites=2, subjects=4, sessions=2, shape=(16, 16, 16), seed=11)
    first = _files(generate_cohort(tmp_path / "a", params).parent)
    second = _files(generate_cohort(tmp_path / "b", params).parent)
    assert first == second
    gz = [name for name in first if name.endswith(".nii.gz")]
    assert len(gz) == 16
    assert all(first[name][4:8] == b"\0\0\0\0" for name in gz)  # gzip mtime
    other = _files(generate_cohort(tmp_path / "c", params.model_copy(update={"seed": 12})).parent)
    assert other[gz[0]] != first[gz[0]]


def test_existing_cohort_is_reused_and_foreign_directory_refused(tmp_path: Path) -> None:
    params = SyntheticParams(sites=1, subjects=2, shape=(8, 8, 8))
    manifest = generate_cohort(tmp_path / "c", params)
    mtime = manifest.stat().st_mtime_ns
    assert generate_cohort(tmp_path / "c", params) == manifest
    assert manifest.stat().st_mtime_ns == mtime
    with pytest.raises(DataError, match="exists and is not a synthetic cohort"):
        generate_cohort(tmp_path / "c", params.model_copy(update={"seed": 1}))
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_concurrent_generation_of_one_cohort(tmp_path: Path) -> None:
    params = SyntheticParams(sites=1, subjects=2, shape=(8, 8, 8))
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(generate_cohort(tmp_path / "c", params)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [tmp_path / "c" / "manifest.tsv"] * 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"subjects": 3, "sites": 2, "scanners_per_site": 2}, "subjects=3 < sites x scanners"),
        ({"subjects": 2, "prevalence": 0.2}, "both classes"),
    ],
)
def test_impossible_parameters_are_refused(tmp_path: Path, update: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        generate_cohort(tmp_path / "c", SyntheticParams(**update))
    assert not list(tmp_path.iterdir())


def test_a_shape_beyond_the_schema_range_is_refused_before_generation() -> None:
    with pytest.raises(ValidationError, match="less than or equal to 512"):
        SyntheticParams(shape=(600, 32, 32))


def _lesion_roi(shape: tuple[int, int, int]) -> np.ndarray:
    """Ball of 16 mm around the lesion region's centre (template scale 1)."""
    coords = Grid(shape).coords
    centre = HEAD_RADII_MM * LESION_CENTER
    return np.sqrt(((coords - centre[:, None, None, None]) ** 2).sum(0)) < 16.0


def test_lesion_contrast_has_the_documented_size(tmp_path: Path) -> None:
    # Same seed with and without effect: anatomy and noise streams are shared, so the difference
    # is the disease signal alone. Without noise or contrast change, inside a lesion
    # I_e - I_0 = B(x) * LESION_CONTRAST * effect * profile(x), with B the bias field (about the
    # local white-matter intensity) and a profile of 1 deep inside and >= 1/2 in the mask.
    base = {"sites": 1, "subjects": 6, "shape": (24, 24, 24), "noise": 0.0, "site_shift": 0.0}
    sick = SyntheticParams(**base, effect=0.8)
    none = SyntheticParams(**base, effect=0.0)
    table = synthetic_table(sick, generate_cohort(tmp_path / "e", sick).parent)
    generate_cohort(tmp_path / "z", none)
    left = Grid(sick.shape).coords[0] < 0
    roi = _lesion_roi(sick.shape)
    for row in table.iter_rows(named=True):
        with_effect = _load(row["image"])
        without = _load(row["image"].replace(str(tmp_path / "e"), str(tmp_path / "z")))
        if row["diagnosis"] == "CN":
            assert np.array_equal(with_effect, without)
            continue
        mask = _load(row["mask"]).astype(bool)
        white = np.percentile(without[roi], 90)  # local white matter x bias field
        gain = (with_effect[mask] - without[mask]) / white
        assert gain.max() == pytest.approx(LESION_CONTRAST * 0.8, rel=0.06)
        assert gain.min() > 0.45 * LESION_CONTRAST * 0.8  # profile >= 1/2 inside the mask
        assert np.array_equal(with_effect[~left], without[~left])  # right hemisphere untouched


def _roi_ratio(table: pl.DataFrame, shape: tuple[int, int, int]) -> np.ndarray:
    roi = _lesion_roi(shape)
    mirror = roi[::-1]  # the same region in the right hemisphere
    return np.array([_load(p)[roi].mean() / _load(p)[mirror].mean() for p in table["image"]])


def test_effect_detectable_at_0_8_and_absent_at_0(tmp_path: Path) -> None:
    params = SyntheticParams(
        subjects=40, sites=4, scanners_per_site=2, effect=0.8, shape=(24, 24, 24), seed=0
    )
    table = synthetic_table(params, generate_cohort(tmp_path / "e", params).parent)
    ratio = _roi_ratio(table, params.shape)
    ad = (table["diagnosis"] == "AD").to_numpy()
    # Welch t-test of the left/right ROI ratio, AD vs CN (scipy.stats.ttest_ind)
    result = stats.ttest_ind(ratio[ad], ratio[~ad], equal_var=False)
    assert result.pvalue < 0.05
    assert ratio[ad].mean() - ratio[~ad].mean() > 0.05

    null = params.model_copy(update={"effect": 0.0})
    null_table = synthetic_table(null, generate_cohort(tmp_path / "z", null).parent)
    assert (null_table["lesion_volume"] == 0).all()
    assert all(_load(p).sum() == 0 for p in null_table["mask"])
    null_ratio = _roi_ratio(null_table, params.shape)
    assert stats.ttest_ind(null_ratio[ad], null_ratio[~ad], equal_var=False).pvalue > 0.05


def test_effect_zero_images_do_not_depend_on_labels(tmp_path: Path) -> None:
    # Changing the prevalence re-draws who is AD but nothing else: at effect 0 the images must be
    # byte-identical although the labels differ.
    base = {"sites": 2, "subjects": 8, "shape": (16, 16, 16), "effect": 0.0}
    a = SyntheticParams(**base, prevalence=0.5)
    b = SyntheticParams(**base, prevalence=0.25)
    ta = synthetic_table(a, generate_cohort(tmp_path / "a", a).parent)
    tb = synthetic_table(b, generate_cohort(tmp_path / "b", b).parent)
    assert not ta["diagnosis"].equals(tb["diagnosis"])
    for pa, pb in zip(ta["image"], tb["image"], strict=True):
        assert Path(pa).read_bytes() == Path(pb).read_bytes()
    # ... while with an effect the same relabelling changes some images
    c = SyntheticParams(**{**base, "effect": 0.8}, prevalence=0.5)
    d = SyntheticParams(**{**base, "effect": 0.8}, prevalence=0.25)
    tc = synthetic_table(c, generate_cohort(tmp_path / "c", c).parent)
    td = synthetic_table(d, generate_cohort(tmp_path / "d", d).parent)
    changed = [
        Path(x).read_bytes() != Path(y).read_bytes()
        for x, y in zip(tc["image"], td["image"], strict=True)
    ]
    assert any(changed)


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_sessions_of_a_subject_are_closer_than_two_subjects(tmp_path: Path, noise: float) -> None:
    params = SyntheticParams(
        sites=1, subjects=6, sessions=2, shape=(24, 24, 24), noise=noise, site_shift=0.0, seed=1
    )
    table = synthetic_table(params, generate_cohort(tmp_path / "c", params).parent)
    images = {s: _load(p) for s, p in zip(table["sample_id"], table["image"], strict=True)}
    subjects = table["subject_id"].unique().sort().to_list()

    def distance(a: str, b: str) -> float:
        return float(np.abs(images[f"{a}_ses-1"] - images[f"{b}_ses-2"]).mean())

    within = [distance(s, s) for s in subjects]
    between = [distance(a, b) for a in subjects for b in subjects if a != b]
    assert max(within) < min(between)
    assert np.mean(within) < 0.8 * np.mean(between)


def test_gzip_payload_is_the_nibabel_image(small_manifest: Path) -> None:
    path = next(small_manifest.parent.rglob("*_T1w.nii.gz"))
    raw = gzip.decompress(path.read_bytes())
    image = nib.load(path)
    assert len(raw) == 352 + int(np.prod(image.shape)) * 4
    assert np.isfinite(image.get_fdata()).all() and image.get_fdata().min() >= 0


def test_cli_synth_reports_the_hierarchy(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from raybench.cli.main import app

    (tmp_path / "empty").mkdir()  # an existing empty directory is fine
    args = ["data", "synth", str(tmp_path / "empty"), "--sites", "2", "--scanners-per-site", "2"]
    args += ["--subjects", "5", "--sessions", "3", "--shape", "8", "12", "10", "--seed", "4"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["images"], report["subjects"], report["sessions"]) == (15, 5, 3)
    assert (report["sites"], report["scanners"]) == (2, 4)
    assert nib.load(tmp_path / "empty" / "sub-005/ses-3/anat/sub-005_ses-3_T1w.nii.gz").shape == (
        8,
        12,
        10,
    )
    bad = CliRunner().invoke(app, ["data", "synth", str(tmp_path / "x"), "--subjects", "1"])
    assert bad.exit_code == 2 and "subjects=1" in bad.output
    assert not (tmp_path / "x").exists()
