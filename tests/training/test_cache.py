"""The volume cache: hits on reuse, misses when data or transform change, safe concurrency."""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from raybench.data.cohort import Cohort
from raybench.data.preprocess import IntensityConfig, PreprocessConfig
from raybench.errors import DataError
from raybench.training.cache import CachedVolumes, VolumeCache, preprocess_for, rows_of


def _rows(cohort: Cohort) -> list[dict]:
    return cohort.table.to_dicts()


def test_second_use_hits_and_arrays_match_a_fresh_decode(cohort: Cohort, tmp_path: Path) -> None:
    pre = preprocess_for(cohort, with_mask=True)
    assert pre.spatial_size == (16, 16, 16)
    first = VolumeCache(tmp_path, cohort, pre)
    stats = first.warm(_rows(cohort))
    assert (stats.hits, stats.misses) == (0, len(cohort.table))
    second = VolumeCache(tmp_path, cohort, pre)
    stats = second.warm(_rows(cohort))
    assert (stats.hits, stats.misses) == (len(cohort.table), 0)
    row = _rows(cohort)[1]
    cached = second.load(row)
    fresh = first._compute(row)
    assert np.array_equal(cached["image"], fresh["image"])
    assert cached["image"].shape == (1, 16, 16, 16) and cached["image"].dtype == np.float32
    assert set(np.unique(cached["mask"])) <= {0, 1}
    # z-score over the non-zero voxels
    inside = cached["image"][cached["image"] != 0]
    assert abs(float(inside.mean())) < 1e-4 and abs(float(inside.std()) - 1) < 1e-3


def test_changed_fingerprint_or_transform_misses(cohort: Cohort, tmp_path: Path) -> None:
    pre = preprocess_for(cohort, with_mask=False)
    base = VolumeCache(tmp_path, cohort, pre)
    base.warm(_rows(cohort)[:2])
    changed_data = dataclasses.replace(cohort, fingerprint="0" * 64)
    other = VolumeCache(tmp_path, changed_data, pre)
    assert other.key != base.key
    assert other.warm(_rows(cohort)[:2]).misses == 2
    resized = VolumeCache(tmp_path, cohort, dataclasses.replace(pre, spatial_size=(8, 8, 8)))
    assert resized.key != base.key
    assert resized.warm(_rows(cohort)[:2]).misses == 2
    assert resized.load(_rows(cohort)[0])["image"].shape == (1, 8, 8, 8)
    # every key of the suite's preprocess: is part of the cache key
    variants = [
        PreprocessConfig(intensity=IntensityConfig("none", {})),
        PreprocessConfig(spacing=(2.0, 2.0, 2.0)),
        PreprocessConfig(crop_foreground=True),
        PreprocessConfig(orientation="LPS"),
    ]
    keys = {base.key, resized.key}
    for config in variants:
        keys.add(VolumeCache(tmp_path, cohort, dataclasses.replace(pre, config=config)).key)
    assert len(keys) == 2 + len(variants)


def test_concurrent_fillers_leave_complete_files_only(cohort: Cohort, tmp_path: Path) -> None:
    pre = preprocess_for(cohort, with_mask=True)
    rows = _rows(cohort)
    caches = [VolumeCache(tmp_path, cohort, pre) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda c: c.warm(rows), caches))
    root = caches[0].root
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]
    assert len(list(root.glob("*.npy"))) == 2 * len(rows)
    reader = VolumeCache(tmp_path, cohort, pre)
    assert reader.warm(rows).misses == 0


def test_torn_file_is_recomputed(cohort: Cohort, tmp_path: Path) -> None:
    pre = preprocess_for(cohort, with_mask=False)
    cache = VolumeCache(tmp_path, cohort, pre)
    row = _rows(cohort)[0]
    good = cache.load(row)["image"]
    path = cache._paths(row["sample_id"])["image"]
    path.write_bytes(path.read_bytes()[:40])
    again = VolumeCache(tmp_path, cohort, pre)
    assert np.array_equal(again.load(row)["image"], good) and again.stats.misses == 1


def test_dataset_items_and_bad_inputs(cohort: Cohort, tmp_path: Path) -> None:
    pre = preprocess_for(cohort, with_mask=True)
    cache = VolumeCache(tmp_path, cohort, pre)
    rows = rows_of(cohort, ["sub-03_ses-1", "sub-00_ses-1"])
    assert [r["sample_id"] for r in rows] == ["sub-03_ses-1", "sub-00_ses-1"]
    item = CachedVolumes(cache, rows, None)[0]
    assert item["target"].shape == (1, 16, 16, 16) and int(item["target"].sum()) > 0
    with pytest.raises(DataError, match="not in the cohort table"):
        rows_of(cohort, ["nobody"])
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a nifti")
    bad_row = {**rows[0], "sample_id": "bad", "image": str(broken)}
    with pytest.raises(DataError, match="sample_id='bad'"):
        cache.load(bad_row)


def test_volumes_of_another_shape_are_resized(cohort: Cohort, tmp_path: Path) -> None:
    other = tmp_path / "big.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((20, 18, 16), np.float32), np.eye(4)), other)
    pre = preprocess_for(cohort, with_mask=False)
    cache = VolumeCache(tmp_path / "c", cohort, pre)
    row = {**_rows(cohort)[0], "sample_id": "big", "image": str(other)}
    assert cache.load(row)["image"].shape == (1, 16, 16, 16)


_WARM_IN_CHILD = """
import pickle, sys
from raybench.training.cache import VolumeCache, preprocess_for
cache_dir, cohort = pickle.load(open(sys.argv[1], "rb"))
cache = VolumeCache(cache_dir, cohort, preprocess_for(cohort, with_mask=True))
print(cache.warm(cohort.table.to_dicts()).misses)
"""


def test_two_processes_fill_one_cache(cohort: Cohort, tmp_path: Path) -> None:
    # Two real processes (not forks: forking a process that runs Ray's or torch's threads can
    # deadlock) race to fill one cache directory.
    args = tmp_path / "args.pkl"
    args.write_bytes(pickle.dumps((tmp_path, cohort)))
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _WARM_IN_CHILD, str(args)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [child.communicate(timeout=240)[0] for child in children]
    assert [child.returncode for child in children] == [0, 0]
    misses = [int(out.strip().splitlines()[-1]) for out in outputs]
    assert sum(misses) >= len(cohort.table)  # both computed, racing on the same files
    reader = VolumeCache(tmp_path, cohort, preprocess_for(cohort, with_mask=True))
    assert reader.warm(cohort.table.to_dicts()).misses == 0
    assert not [p for p in reader.root.iterdir() if p.name.endswith(".tmp")]


def test_node_cache_dir_is_resolved_where_the_trial_runs(tmp_path, monkeypatch):
    from raybench.training.cache import CACHE_ENV, node_cache_dir

    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # the node's temp folder
    assert node_cache_dir() == tmp_path / "tmp" / "raybench-cache"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "node"))
    assert node_cache_dir() == tmp_path / "node"
    assert node_cache_dir(tmp_path / "shared") == tmp_path / "shared"  # --cache-dir wins
