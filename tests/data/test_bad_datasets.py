"""A corpus of broken datasets: each must fail `raybench data check` with exit 2, name the file,
row and column, and write nothing."""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from raybench.cli.main import app

Mutation = Callable[[Path], list[str]]  # changes the copied cohort, returns extra CLI args


def _manifest(root: Path) -> pl.DataFrame:
    return pl.read_csv(root / "manifest.tsv", separator="\t", infer_schema=False)


def _save(root: Path, table: pl.DataFrame, name: str = "manifest.tsv") -> None:
    table.write_csv(root / name, separator="\t" if name.endswith(".tsv") else ",")


def _set(root: Path, row: int, column: str, value: str | None) -> None:
    """Set the cell at file row ``row`` (header = 1) of manifest.tsv."""
    table = _manifest(root)
    values = table[column].to_list()
    values[row - 2] = value
    _save(root, table.with_columns(pl.Series(column, values, dtype=pl.String)))


def _image(root: Path, row: int, column: str = "image") -> Path:
    return root / _manifest(root)[column][row - 2]


def missing_column(root: Path) -> list[str]:
    _save(root, _manifest(root).rename({"subject_id": "subjectid"}))
    return []


def missing_file(root: Path) -> list[str]:
    _image(root, 4).unlink()
    return []


def truncated_gzip(root: Path) -> list[str]:
    path = _image(root, 3)
    path.write_bytes(path.read_bytes()[:-300])
    return []


def not_gzip(root: Path) -> list[str]:
    _image(root, 5).write_bytes(b"this is not a NIfTI file at all" * 20)
    return []


def four_d_image(root: Path) -> list[str]:
    path = _image(root, 6)
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 16, 2), np.float32), np.eye(4)), path)
    return []


def duplicate_id(root: Path) -> list[str]:
    table = _manifest(root)
    _save(root, pl.concat([table, table.slice(1, 1)]))
    return []


def two_sites(root: Path) -> list[str]:
    _set(root, 3, "site", "site02")  # row 3 = sub-001 ses-2, recorded at site01 in row 2
    return []


def empty_cell(root: Path) -> list[str]:
    _set(root, 7, "session_id", None)
    return []


def label_outside_classes(root: Path) -> list[str]:
    _set(root, 5, "diagnosis", "MCI")
    return ["--task", "classification", "--label", "diagnosis", "--class", "CN", "--class", "AD"]


def positive_absent(root: Path) -> list[str]:
    return ["--task", "classification", "--label", "diagnosis", "--positive", "ad"]


def non_numeric_target(root: Path) -> list[str]:
    _set(root, 8, "age", "seventy")
    return ["--task", "regression", "--label", "age"]


def mask_shape_mismatch(root: Path) -> list[str]:
    path = _image(root, 4, "mask")
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.uint8), np.eye(4)), path)
    return ["--task", "segmentation", "--label", "mask"]


def mask_missing(root: Path) -> list[str]:
    _image(root, 9, "mask").unlink()
    return ["--task", "segmentation", "--label", "mask"]


def csv_misspelt_column(root: Path) -> list[str]:
    table = _manifest(root).rename({"image": "img"})
    (root / "manifest.tsv").unlink()
    _save(root, table, "manifest.csv")
    return []


def duplicate_header(root: Path) -> list[str]:
    text = (root / "manifest.tsv").read_text().splitlines()
    text[0] = text[0].replace("diagnosis", "site")
    (root / "manifest.tsv").write_text("\n".join(text) + "\n")
    return []


def ragged_row(root: Path) -> list[str]:
    lines = (root / "manifest.tsv").read_text().splitlines()
    lines[4] += "\textra"
    (root / "manifest.tsv").write_text("\n".join(lines) + "\n")
    return []


CASES: list[tuple[Mutation, str, list[str]]] = [
    (missing_column, "manifest.tsv", ["row 1", "'subject_id'", "did you mean 'subjectid'"]),
    (missing_file, "manifest.tsv", ["row 4, column 'image'", "file not found"]),
    (truncated_gzip, "manifest.tsv", ["row 3, column 'image'", "truncated gzip"]),
    (not_gzip, "manifest.tsv", ["row 5, column 'image'", "corrupt or not a NIfTI"]),
    (four_d_image, "manifest.tsv", ["row 6, column 'image'", "4-D", "allowed: 3-D"]),
    (duplicate_id, "manifest.tsv", ["row 10, column 'sample_id'", "'sub-001_ses-2'", "row 3"]),
    (two_sites, "manifest.tsv", ["row 3, column 'site'", "'sub-001'", "row 2"]),
    (empty_cell, "manifest.tsv", ["row 7, column 'session_id'", "empty value"]),
    (label_outside_classes, "manifest.tsv", ["row 5, column 'diagnosis'", "'MCI'"]),
    (positive_absent, "manifest.tsv", ["column 'diagnosis'", "task.positive 'ad'", "'AD'"]),
    (non_numeric_target, "manifest.tsv", ["row 8, column 'age'", "'seventy' is not a number"]),
    (mask_shape_mismatch, "manifest.tsv", ["row 4, column 'mask'", "(8, 8, 8)", "(16, 16, 16)"]),
    (mask_missing, "manifest.tsv", ["row 9, column 'mask'", "file not found"]),
    (csv_misspelt_column, "manifest.csv", ["row 1", "'image'", "did you mean 'img'"]),
    (duplicate_header, "manifest.tsv", ["row 1", "'site' appears 2 times"]),
    (ragged_row, "manifest.tsv", ["row 5 (11 fields, the header has 10)"]),
]


def _snapshot(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("*")}


def _run(target: Path, args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["data", "check", str(target), *args])
    return result.exit_code, result.output


@pytest.mark.parametrize(("mutate", "file", "expected"), CASES, ids=[c[0].__name__ for c in CASES])
def test_bad_manifest(
    tiny_manifest: Path, tmp_path: Path, mutate: Mutation, file: str, expected: list[str]
) -> None:
    root = tmp_path / "cohort"
    shutil.copytree(tiny_manifest.parent, root)
    args = mutate(root)
    before = _snapshot(root)
    code, output = _run(root / file, args)
    assert code == 2, output
    assert str(root / file) in output
    flat = " ".join(output.split())
    for fragment in expected:
        assert fragment in flat, (fragment, output)
    assert _snapshot(root) == before  # nothing written


def test_pristine_copy_passes(tiny_manifest: Path, tmp_path: Path) -> None:
    root = tmp_path / "cohort"
    shutil.copytree(tiny_manifest.parent, root)
    task = ["--task", "classification", "--label", "diagnosis", "--positive", "AD"]
    code, output = _run(root / "manifest.tsv", task)
    assert code == 0, output
    code, output = _run(root / "manifest.tsv", ["--task", "segmentation", "--label", "mask"])
    assert code == 0, output


def _bids(tiny_manifest: Path, tmp_path: Path) -> Path:
    root = tmp_path / "bids"
    shutil.copytree(tiny_manifest.parent, root)
    return root


def test_bids_participant_without_images(tiny_manifest: Path, tmp_path: Path) -> None:
    root = _bids(tiny_manifest, tmp_path)
    shutil.rmtree(root / "sub-003")
    code, output = _run(root, [])
    assert code == 2
    flat = " ".join(output.split())
    assert f"{root / 'participants.tsv'}, row 4, column 'participant_id'" in flat
    assert "no image of 'sub-003'" in flat


def test_bids_images_of_unlisted_subject(tiny_manifest: Path, tmp_path: Path) -> None:
    root = _bids(tiny_manifest, tmp_path)
    lines = (root / "participants.tsv").read_text().splitlines()
    (root / "participants.tsv").write_text("\n".join(lines[:-1]) + "\n")
    code, output = _run(root, [])
    assert code == 2
    assert "subject 'sub-004' has images but no row in" in " ".join(output.split())


def test_bids_missing_participants_and_bad_pattern(tiny_manifest: Path, tmp_path: Path) -> None:
    root = _bids(tiny_manifest, tmp_path)
    code, output = _run(root, ["--pattern", "sub-{participant}/*.nii.gz"])
    assert code == 2 and "unknown placeholders: ['{participant}']" in output
    (root / "participants.tsv").unlink()
    code, output = _run(root, [])
    assert code == 2 and "no participants.tsv" in output


def test_bids_two_images_per_session(tiny_manifest: Path, tmp_path: Path) -> None:
    root = _bids(tiny_manifest, tmp_path)
    anat = root / "sub-002" / "ses-1" / "anat"
    src = anat / "sub-002_ses-1_T1w.nii.gz"
    shutil.copy(src, anat / "sub-002_ses-1_run-2_T1w.nii.gz")
    code, output = _run(root, [])
    assert code == 2
    flat = " ".join(output.split())
    assert "row 3: 2 images of sub-002 ses-1 match" in flat


def test_corrupt_data_after_a_valid_header_is_caught_by_the_trailer(
    tiny_manifest: Path, tmp_path: Path
) -> None:
    # Re-compress a file whose payload is one byte short: the header still parses, the size
    # recorded in the gzip trailer gives it away (nothing is decompressed).
    root = tmp_path / "cohort"
    shutil.copytree(tiny_manifest.parent, root)
    path = _image(root, 2)
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-1], mtime=0))
    code, output = _run(root / "manifest.tsv", [])
    assert code == 2 and "row 2, column 'image'" in output and "implies 16736" in output
