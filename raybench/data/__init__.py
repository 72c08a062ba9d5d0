"""Data sources (synthetic, manifest, BIDS), validated into :class:`~raybench.data.cohort.Cohort`.

The rest of raybench uses one entry: :func:`load_cohort` turns a dataset of the suite into a
validated, fingerprinted cohort; :func:`check_dataset` validates one without writing anything.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from raybench.data.bids import read_bids, read_bids_table
from raybench.data.cohort import REQUIRED_COLUMNS, Cohort
from raybench.data.fingerprint import synthetic_fingerprint
from raybench.data.manifest import read_manifest, read_manifest_table
from raybench.data.synthetic import (
    MANIFEST_NAME,
    check_params,
    generate_cohort,
    synthetic_table,
)
from raybench.data.validate import check_cohort, check_task
from raybench.errors import DataError
from raybench.suite.schema import (
    BidsDataset,
    GeneratedDataset,
    ManifestDataset,
    SyntheticDataset,
    Task,
)

__all__ = [
    "REQUIRED_COLUMNS",
    "Cohort",
    "check_cohort",
    "check_dataset",
    "check_task",
    "generate_cohort",
    "load_cohort",
    "read_bids",
    "read_manifest",
    "synthetic_cohort_dir",
    "synthetic_table",
]

DatasetSpec = SyntheticDataset | ManifestDataset | BidsDataset | GeneratedDataset


def _under(base: Path, path: str) -> Path:
    return Path(os.path.abspath(base / os.path.expanduser(path)))


def synthetic_cohort_dir(spec: SyntheticDataset, suite_dir: Path, data_root: Path) -> Path:
    """Where a synthetic dataset lives: ``<root>/<name>-<first 12 hex of its fingerprint>``.

    ``<root>`` is the dataset's ``cache_dir`` (relative to the suite file) when set, else
    ``data_root``. The hash makes a cohort with other parameters land in another directory.
    """
    root = _under(suite_dir, spec.cache_dir) if spec.cache_dir else Path(data_root)
    return Path(os.path.abspath(root)) / f"{spec.name}-{synthetic_fingerprint(spec.params)[:12]}"


def _synthetic(spec: SyntheticDataset, root: Path) -> Cohort:
    table = synthetic_table(spec.params, root)
    return Cohort(
        name=spec.name,
        table=table,
        fingerprint=synthetic_fingerprint(spec.params),
        source=str(root / MANIFEST_NAME),
        rows=tuple(range(2, table.height + 2)),
    )


def load_cohort(
    spec: DatasetSpec,
    suite_dir: Path,
    data_root: Path,
    *,
    materialize: bool = True,
    suite: Any = None,
    cohorts: Mapping[str, Cohort] | None = None,
) -> Cohort:
    """The validated, fingerprinted cohort of one suite dataset.

    Synthetic datasets are generated once into :func:`synthetic_cohort_dir` and reused afterwards;
    manifest and BIDS paths are relative to ``suite_dir``. With ``materialize=False`` nothing is
    written: a synthetic cohort's table points where its files would be, and file-based sources do
    not update their content-hash memo. A generated dataset needs the ``suite`` (task, outer
    protocol) and the already loaded ``cohorts`` holding its ``from`` dataset
    (:mod:`raybench.data.generated`). Raises :class:`~raybench.errors.DataError`.
    """
    suite_dir = Path(suite_dir)
    if isinstance(spec, GeneratedDataset):
        source = (cohorts or {}).get(spec.params.from_)
        if source is None or suite is None:
            raise DataError(
                f"dataset {spec.name!r}: from={spec.params.from_!r} is not a loaded dataset; "
                "load the other datasets of the suite first and pass suite= and cohorts="
            )
        root = _under(suite_dir, spec.cache_dir) if spec.cache_dir else Path(data_root)
        from raybench.data.generated import generated_cohort  # torch and MONAI: only when used

        return generated_cohort(spec, source, suite, root, materialize=materialize)
    if isinstance(spec, SyntheticDataset):
        root = synthetic_cohort_dir(spec, suite_dir, data_root)
        if materialize:
            generate_cohort(root, spec.params)
        else:
            check_params(spec.params)
        return _synthetic(spec, root)
    if isinstance(spec, ManifestDataset):
        return read_manifest(
            _under(suite_dir, spec.path), spec.columns, name=spec.name, write_cache=materialize
        )
    return read_bids(
        _under(suite_dir, spec.path),
        spec.pattern,
        spec.columns,
        name=spec.name,
        write_cache=materialize,
    )


def check_dataset(spec: DatasetSpec, suite_dir: Path, *, task: Task | None = None) -> None:
    """Validate one suite dataset (and, if given, its fitness for ``task``); write nothing.

    File-based sources are parsed and every image header is read (no voxel data is decoded, no
    content is hashed); synthetic parameters are checked and the task checked against the table
    the generator would write. Raises :class:`~raybench.errors.DataError`.
    """
    suite_dir = Path(suite_dir)
    if isinstance(spec, GeneratedDataset):
        if task is not None and task.type != "classification":
            raise DataError(
                f"dataset {spec.name!r} (source: generated): task.type={task.type!r}; the "
                f"{spec.params.generator} generator is class-conditional and needs classification"
            )
        return
    if isinstance(spec, SyntheticDataset):
        check_params(spec.params)
        if task is not None:
            cohort = _synthetic(spec, suite_dir / ".raybench-data" / spec.name)
            check_task(cohort, task, files=False)
        return
    if isinstance(spec, ManifestDataset):
        cohort = read_manifest_table(_under(suite_dir, spec.path), spec.columns, name=spec.name)
    else:
        cohort = read_bids_table(
            _under(suite_dir, spec.path), spec.pattern, spec.columns, name=spec.name
        )
    check_cohort(cohort)
    if task is not None:
        check_task(cohort, task)
