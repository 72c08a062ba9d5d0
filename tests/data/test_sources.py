"""Manifest and BIDS/CAPS sources, fingerprints, and the load_cohort / check_dataset entry."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

import raybench.data.fingerprint as fingerprint_module
from raybench.data import (
    REQUIRED_COLUMNS,
    check_dataset,
    check_task,
    load_cohort,
    read_bids,
    read_manifest,
    synthetic_cohort_dir,
    synthetic_table,
)
from raybench.data.fingerprint import HASH_CACHE_NAME, synthetic_fingerprint
from raybench.errors import DataError
from raybench.suite.schema import (
    BidsDataset,
    ColumnMap,
    ManifestDataset,
    SyntheticDataset,
    SyntheticParams,
    Task,
)


@pytest.fixture
def cohort_copy(tiny_manifest: Path, tmp_path: Path) -> Path:
    root = tmp_path / "cohort"
    shutil.copytree(tiny_manifest.parent, root)
    return root


def _table(root: Path) -> pl.DataFrame:
    return pl.read_csv(root / "manifest.tsv", separator="\t", infer_schema=False)


def test_csv_with_mapped_columns_and_defaults(cohort_copy: Path) -> None:
    table = (
        _table(cohort_copy)
        .drop("sample_id", "scanner", "site")
        .rename({"subject_id": "RID", "image": "t1", "diagnosis": "dx"})
    )
    table.write_csv(cohort_copy / "list.csv")
    columns = ColumnMap(subject_id="RID", image="t1", label="dx")
    cohort = read_manifest(cohort_copy / "list.csv", columns)
    assert cohort.table.columns[:6] == list(REQUIRED_COLUMNS)
    assert set(cohort.table["site"]) == {"unknown"} == set(cohort.table["scanner"])
    assert cohort.table["sample_id"][0] == "sub-001_ses-1"
    assert cohort.table["image"][0] == str(
        cohort_copy / "sub-001/ses-1/anat/sub-001_ses-1_T1w.nii.gz"
    )
    assert "label" in cohort.table.columns and "mask" in cohort.table.columns
    assert Path(cohort.table["mask"][0]).is_absolute()
    assert cohort.where(2, "subject_id") == f"{cohort_copy / 'list.csv'}, row 4, column 'RID'"


def test_sniffed_separator_and_blank_lines_keep_row_numbers(cohort_copy: Path) -> None:
    lines = (cohort_copy / "manifest.tsv").read_text().splitlines()
    lines.insert(3, "")  # a blank line after file row 3
    lines[6] = lines[6].replace("\tAD\t", "\t\t").replace("\tCN\t", "\t\t")
    (cohort_copy / "list.txt").write_text("\n".join(lines) + "\n")
    cohort = read_manifest(cohort_copy / "list.txt")
    assert cohort.table.height == 8
    assert cohort.rows == (2, 3, 5, 6, 7, 8, 9, 10)
    with pytest.raises(DataError, match=r"list\.txt, row 7, column 'diagnosis': empty label"):
        check_task(cohort, Task(type="classification", label="diagnosis"))


def test_explicit_label_column_must_exist(cohort_copy: Path) -> None:
    with pytest.raises(DataError, match=r"row 1: missing column 'dx' \(columns.label\)"):
        read_manifest(cohort_copy / "manifest.tsv", ColumnMap(label="dx"))


def test_sample_id_column_is_used_when_present(cohort_copy: Path) -> None:
    table = _table(cohort_copy).with_columns(
        pl.format("img{}", pl.int_range(pl.len())).alias("sample_id")
    )
    table.write_csv(cohort_copy / "manifest.tsv", separator="\t")
    cohort = read_manifest(cohort_copy / "manifest.tsv")
    assert cohort.table["sample_id"].to_list()[:2] == ["img0", "img1"]


def test_bids_and_manifest_agree(cohort_copy: Path) -> None:
    manifest = read_manifest(cohort_copy / "manifest.tsv")
    bids = read_bids(cohort_copy)
    assert bids.table.select(REQUIRED_COLUMNS).equals(manifest.table.select(REQUIRED_COLUMNS))
    # the session-level age (sessions.tsv) wins over the baseline age in participants.tsv
    assert bids.table["age"].equals(manifest.table["age"])
    assert bids.where(1, "subject_id").endswith("participants.tsv, row 2, column 'participant_id'")


def test_caps_like_tree_with_a_pattern(cohort_copy: Path, tmp_path: Path) -> None:
    caps = tmp_path / "caps"
    for image in sorted(cohort_copy.rglob("*_T1w.nii.gz")):
        sub, ses = image.name.split("_")[:2]
        target = caps / "subjects" / sub / ses / "t1_linear"
        target.mkdir(parents=True)
        shutil.copy(
            image, target / f"{sub}_{ses}_T1w_space-MNI152NLin2009cSym_res-1x1x1_T1w.nii.gz"
        )
    shutil.copy(cohort_copy / "participants.tsv", caps / "participants.tsv")
    cohort = read_bids(caps, "subjects/sub-{subject}/ses-{session}/t1_linear/*_T1w.nii.gz")
    assert cohort.table.height == 8
    assert cohort.table["session_id"].unique().sort().to_list() == ["ses-1", "ses-2"]
    assert cohort.table["site"].n_unique() == 2  # from participants.tsv
    assert set(cohort.table["age"]) == set(
        pl.read_csv(caps / "participants.tsv", separator="\t", infer_schema=False)["age"]
    )


def test_fingerprint_is_stable_across_locations_and_tracks_content(
    cohort_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = read_manifest(cohort_copy / "manifest.tsv")
    assert (cohort_copy / HASH_CACHE_NAME).is_file()
    moved = tmp_path / "elsewhere" / "cohort"
    shutil.copytree(cohort_copy, moved)
    (moved / HASH_CACHE_NAME).unlink()
    assert read_manifest(moved / "manifest.tsv").fingerprint == first.fingerprint

    # memoised: a second read hashes nothing
    calls: list[Path] = []
    real = fingerprint_module.file_sha256
    monkeypatch.setattr(fingerprint_module, "file_sha256", lambda p: calls.append(p) or real(p))
    assert read_manifest(cohort_copy / "manifest.tsv").fingerprint == first.fingerprint
    assert calls == []

    # same size, one byte changed: the content hash notices
    image = Path(first.table["image"][3])
    data = bytearray(image.read_bytes())
    data[-10] ^= 0xFF
    image.write_bytes(bytes(data))
    assert read_manifest(cohort_copy / "manifest.tsv").fingerprint != first.fingerprint
    assert calls == [image]

    # a label change changes it too; write_cache=False leaves the memo alone
    table = _table(cohort_copy).with_columns(pl.lit("CN").alias("diagnosis"))
    table.write_csv(cohort_copy / "manifest.tsv", separator="\t")
    stamp = (cohort_copy / HASH_CACHE_NAME).stat().st_mtime_ns
    changed = read_manifest(cohort_copy / "manifest.tsv", write_cache=False)
    assert changed.fingerprint != first.fingerprint
    assert (cohort_copy / HASH_CACHE_NAME).stat().st_mtime_ns == stamp


def test_load_cohort_synthetic_materialize_and_reuse(tmp_path: Path) -> None:
    params = SyntheticParams(sites=2, subjects=4, shape=(12, 12, 12), seed=9)
    spec = SyntheticDataset(name="synth", source="synthetic", params=params)
    data_root = tmp_path / "data"
    planned = load_cohort(spec, tmp_path, data_root, materialize=False)
    assert not data_root.exists()
    assert planned.fingerprint == synthetic_fingerprint(params)
    root = synthetic_cohort_dir(spec, tmp_path, data_root)
    assert root.name == f"synth-{planned.fingerprint[:12]}"
    assert planned.table.equals(synthetic_table(params, root))

    loaded = load_cohort(spec, tmp_path, data_root)
    assert loaded.table.equals(planned.table) and loaded.fingerprint == planned.fingerprint
    assert all(Path(p).is_file() for p in loaded.table["image"])
    stamp = (root / "manifest.tsv").stat().st_mtime_ns
    load_cohort(spec, tmp_path, data_root)
    assert (root / "manifest.tsv").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in data_root.iterdir()) == [root.name]


def test_load_cohort_manifest_and_bids_relative_to_suite(cohort_copy: Path) -> None:
    suite_dir = cohort_copy.parent
    manifest = ManifestDataset(name="m", source="manifest", path="cohort/manifest.tsv")
    bids = BidsDataset(name="b", source="bids", path="cohort")
    from_manifest = load_cohort(manifest, suite_dir, suite_dir / "unused")
    from_bids = load_cohort(bids, suite_dir, suite_dir / "unused")
    assert from_manifest.name == "m" and from_bids.name == "b"
    assert from_manifest.table.height == from_bids.table.height == 8
    assert not (suite_dir / "unused").exists()


def test_check_dataset_writes_nothing_and_checks_the_task(
    tmp_path: Path, cohort_copy: Path
) -> None:
    spec = SyntheticDataset(name="s", source="synthetic", params=SyntheticParams(subjects=8))
    check_dataset(spec, tmp_path, task=Task(type="segmentation", label="mask"))
    check_dataset(spec, tmp_path, task=Task(type="regression", label="age"))
    with pytest.raises(DataError, match=r"task\.positive 'MCI' never occurs"):
        check_dataset(
            spec, tmp_path, task=Task(type="classification", label="diagnosis", positive="MCI")
        )
    with pytest.raises(DataError, match=r"column named by task\.label not found"):
        check_dataset(spec, tmp_path, task=Task(type="classification", label="label"))
    bad = SyntheticDataset(
        name="s", source="synthetic", params=SyntheticParams(sites=4, subjects=3)
    )
    with pytest.raises(DataError, match="subjects=3 < sites x scanners_per_site = 4"):
        check_dataset(bad, tmp_path)

    before = sorted(p.name for p in cohort_copy.iterdir())
    manifest = ManifestDataset(name="m", source="manifest", path=str(cohort_copy / "manifest.tsv"))
    check_dataset(manifest, tmp_path, task=Task(type="classification", label="diagnosis"))
    assert sorted(p.name for p in cohort_copy.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort"]
