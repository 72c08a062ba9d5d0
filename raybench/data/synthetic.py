"""The built-in synthetic cohort: brain-like phantoms with a known hierarchy and a known effect.

:func:`synthetic_table` computes the cohort table from the parameters alone (the compiler plans from
it without writing anything); :func:`generate_cohort` writes the same table as ``manifest.tsv`` with
real ``.nii.gz`` images and ground-truth lesion masks, atomically. The generative model is in
docs/synthetic.md; the image model is :mod:`raybench.data.phantom`.

Randomness comes from independent streams ``numpy.random.default_rng([seed, stream, ...])``: one for
the design (sites, labels, ages), one per site, per scanner, per subject (anatomy) and per session
(acquisition and noise). Every stream draws the same numbers whatever the diagnosis, effect or
shape, so changing ``effect`` changes only the disease signal and never the anatomy.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl
from raybench_analysis.vocabulary import SYNTHETIC_CLASSES

from raybench.data.fingerprint import synthetic_fingerprint, synthetic_identity
from raybench.data.nifti import write_nifti
from raybench.data.phantom import (
    GENERATOR_VERSION,
    Acquisition,
    Anatomy,
    Contrast,
    Grid,
    lesion_mask,
    lesion_volume,
    render,
)
from raybench.data.shortcut import add_marker, has_marker
from raybench.errors import DataError
from raybench.suite.schema import SyntheticParams

__all__ = [
    "MANIFEST_NAME",
    "PARAMS_NAME",
    "check_params",
    "generate_cohort",
    "synthetic_table",
]

MANIFEST_NAME = "manifest.tsv"
PARAMS_NAME = "raybench-synthetic.json"
AGE_RANGE = (60.0, 85.0)  # baseline age, uniform, rounded to 0.1 year
SESSION_INTERVAL_YEARS = 1.5
# Stream keys of numpy.random.default_rng([seed, stream, ...]).
_DESIGN, _SITE, _SCANNER, _SUBJECT, _SESSION = range(5)


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([seed % 2**64, *key])


@dataclass(frozen=True)
class Subject:
    """One subject of the design: where it was scanned, its diagnosis and baseline age."""

    index: int
    subject_id: str
    site_index: int
    scanner_index: int
    site: str
    scanner: str
    diagnosis: str
    age: float


def check_params(params: SyntheticParams) -> None:
    """Reject parameters that cannot give the requested hierarchy (raises :class:`DataError`).

    Each key's own range (the volume shape's, for one) is the suite schema's, checked when
    ``params`` is built.
    """
    problems = []
    cells = params.sites * params.scanners_per_site
    if params.subjects < cells:
        problems.append(
            f"params.subjects={params.subjects} < sites x scanners_per_site = {cells}: every "
            "scanner needs a subject; raise subjects or lower sites/scanners_per_site"
        )
    weights = params.site_weights
    if weights is not None and len(weights) != params.sites:
        problems.append(
            f"params.site_weights has {len(weights)} weight(s) for sites={params.sites}; give "
            "one weight per site"
        )
    elif weights is not None:
        small = [j + 1 for j, q in enumerate(_site_counts(params)) if q < params.scanners_per_site]
        if small:
            problems.append(
                f"params.site_weights={weights} leaves site(s) {small} fewer subjects than "
                f"scanners_per_site={params.scanners_per_site}; raise their weights or subjects"
            )
    marked = params.shortcut.sites if params.shortcut is not None else []
    unknown = sorted(set(marked) - set(_labels(2, "site", params.sites)))
    if unknown:
        problems.append(
            f"params.shortcut.sites={unknown} are not sites of this cohort (site01 ... "
            f"site{params.sites:02d}); name existing sites, or [] for all"
        )
    n_ad = _n_diseased(params)
    if not 1 <= n_ad <= params.subjects - 1:
        problems.append(
            f"params.prevalence={params.prevalence} with subjects={params.subjects} gives {n_ad} "
            "AD subjects; both classes need at least one subject (change prevalence or subjects)"
        )
    if problems:
        raise DataError("invalid synthetic parameters:\n  - " + "\n  - ".join(problems))


def _n_diseased(params: SyntheticParams) -> int:
    return math.floor(params.subjects * params.prevalence + 0.5)


def _site_counts(params: SyntheticParams) -> list[int]:
    """Subjects per site: ``site_weights`` shared out by largest remainders (Hamilton)."""
    w = np.asarray(params.site_weights, dtype=float)
    share = params.subjects * w / w.sum()
    counts = np.floor(share).astype(int)
    for j in np.argsort(-(share - counts), kind="stable")[: params.subjects - int(counts.sum())]:
        counts[j] += 1
    return counts.tolist()


def _labels(width: int, prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i + 1:0{width}d}" for i in range(n)]


def design(params: SyntheticParams) -> list[Subject]:
    """Subjects in order, assigned round-robin to sites then scanners, labels balanced per site.

    Diagnoses: subjects of each site are shuffled and the sites concatenated; the k-th subject of
    that order is AD when ``floor((k+1)p + 1/2) > floor(kp + 1/2)``, so exactly
    ``floor(N p + 1/2)`` subjects are AD and every site is within one subject of ``p``.
    """
    rng = _rng(params.seed, _DESIGN)
    n, n_sites = params.subjects, params.sites
    if params.site_weights is None:
        site_of = [i % n_sites for i in range(n)]
    else:  # site j takes the next count_j subjects
        site_of = [j for j, q in enumerate(_site_counts(params)) for _ in range(q)]
    seen = [0] * n_sites  # a subject's rank within its site: i // n_sites when round-robin
    scanner_of = []
    for j in site_of:
        scanner_of.append(seen[j] % params.scanners_per_site)
        seen[j] += 1
    order = [
        i
        for j in range(n_sites)
        for i in rng.permutation([i for i in range(n) if site_of[i] == j]).tolist()
    ]
    p = params.prevalence
    diagnosis = [""] * n
    for k, i in enumerate(order):
        diseased = math.floor((k + 1) * p + 0.5) > math.floor(k * p + 0.5)
        diagnosis[i] = SYNTHETIC_CLASSES[1] if diseased else SYNTHETIC_CLASSES[0]
    ages = np.round(rng.uniform(*AGE_RANGE, size=n), 1)
    sites = _labels(2, "site", n_sites)
    subject_ids = _labels(max(3, len(str(n))), f"sub-{params.subject_prefix}", n)
    return [
        Subject(
            index=i,
            subject_id=subject_ids[i],
            site_index=site_of[i],
            scanner_index=scanner_of[i],
            site=sites[site_of[i]],
            scanner=f"{sites[site_of[i]]}-scan{scanner_of[i] + 1}",
            diagnosis=diagnosis[i],
            age=float(ages[i]),
        )
        for i in range(n)
    ]


def contrast(params: SyntheticParams, site_index: int, scanner_index: int) -> Contrast:
    """Site x scanner response: log-normal gain (mean 1) and gamma (median 1), SD ∝ site_shift."""
    sd = params.site_shift
    z_site = _rng(params.seed, _SITE, site_index).standard_normal(2)
    z_scan = _rng(params.seed, _SCANNER, site_index, scanner_index).standard_normal(2)
    log_gain = sd * z_site[0] - sd**2 / 2 + (sd / 2) * z_scan[0] - (sd / 2) ** 2 / 2
    log_gamma = (sd / 2) * z_site[1] + (sd / 4) * z_scan[1]
    return Contrast(gain=float(np.exp(log_gain)), gamma=float(np.exp(log_gamma)))


def session_age(subject: Subject, session: int) -> float:
    """Age at a session: baseline age plus :data:`SESSION_INTERVAL_YEARS` per session."""
    return round(subject.age + SESSION_INTERVAL_YEARS * session, 1)


@dataclass(frozen=True)
class _Image:
    subject: Subject
    session: int
    session_id: str
    image: str  # relative to the cohort root
    mask: str
    anatomy: Anatomy
    active: bool  # the subject's lesions are in its images and mask
    lesion_volume: int
    marker: bool  # the image carries the shortcut marker (raybench.data.shortcut)

    @property
    def age(self) -> float:
        return session_age(self.subject, self.session)


def _images(params: SyntheticParams) -> Iterator[_Image]:
    grid = Grid(params.shape)
    for subject in design(params):
        anatomy = Anatomy.draw(_rng(params.seed, _SUBJECT, subject.index))
        anatomy = replace(anatomy, lesion_radii=anatomy.lesion_radii * params.lesion_scale)
        active = subject.diagnosis == SYNTHETIC_CLASSES[1] and params.effect > 0
        volume = lesion_volume(grid, anatomy, active)
        for t in range(params.sessions):
            sub, ses = subject.subject_id, f"ses-{t + 1}"
            stem = f"{sub}/{ses}/anat/{sub}_{ses}"
            yield _Image(
                subject,
                t,
                ses,
                f"{stem}_T1w.nii.gz",
                f"{stem}_desc-lesion_mask.nii.gz",
                anatomy,
                active,
                volume,
                has_marker(params.shortcut, params.seed, subject.site, subject.diagnosis,
                           subject.index, t),
            )  # fmt: skip


def _table(images: list[_Image], root: str, shortcut: bool = False) -> pl.DataFrame:
    """The manifest; with a ``shortcut``, a ``shortcut`` column (1: the image has the marker)."""

    def place(rel: str) -> str:
        return os.path.join(root, rel) if root else rel

    table = pl.DataFrame(
        {
            "sample_id": [f"{m.subject.subject_id}_{m.session_id}" for m in images],
            "subject_id": [m.subject.subject_id for m in images],
            "session_id": [m.session_id for m in images],
            "scanner": [m.subject.scanner for m in images],
            "site": [m.subject.site for m in images],
            "image": [place(m.image) for m in images],
            "diagnosis": [m.subject.diagnosis for m in images],
            "age": [m.age for m in images],
            "mask": [place(m.mask) for m in images],
            "lesion_volume": [float(m.lesion_volume) for m in images],
        },
        schema={
            "sample_id": pl.String,
            "subject_id": pl.String,
            "session_id": pl.String,
            "scanner": pl.String,
            "site": pl.String,
            "image": pl.String,
            "diagnosis": pl.String,
            "age": pl.Float64,
            "mask": pl.String,
            "lesion_volume": pl.Float64,
        },
    )
    if shortcut:
        table = table.with_columns(pl.Series("shortcut", [int(m.marker) for m in images]))
    return table


def synthetic_table(params: SyntheticParams, root: str | Path) -> pl.DataFrame:
    """The cohort table of ``params`` as :func:`generate_cohort` writes it under ``root``.

    Computed without rendering or writing any image (lesion volumes come from the lesion geometry
    alone), with ``image`` and ``mask`` absolute paths under ``root``.

    Examples:
        >>> from raybench.suite.schema import SyntheticParams
        >>> t = synthetic_table(SyntheticParams(sites=2, subjects=4, sessions=2), "/data/c")
        >>> t.height, t["site"].n_unique(), sorted(t["diagnosis"].unique())
        (8, 2, ['AD', 'CN'])
        >>> t["image"][0]
        '/data/c/sub-001/ses-1/anat/sub-001_ses-1_T1w.nii.gz'
    """
    check_params(params)
    return _table(list(_images(params)), os.path.abspath(root), params.shortcut is not None)


def _existing(out: Path, params: SyntheticParams) -> Path | None:
    """The manifest of a finished generation of ``params`` in ``out``, if there is one."""
    try:
        recorded = json.loads((out / PARAMS_NAME).read_text())
    except (OSError, ValueError):
        return None
    if recorded.get("identity") != synthetic_identity(params):
        return None
    manifest = out / MANIFEST_NAME
    return manifest if manifest.is_file() else None


def _write(tmp: Path, params: SyntheticParams) -> None:
    grid = Grid(params.shape)
    images = list(_images(params))
    description = f"raybench synthetic v{GENERATOR_VERSION}"
    for item in images:
        subject = item.subject
        rng = _rng(params.seed, _SESSION, subject.index, item.session)
        acquisition = Acquisition.draw(rng)
        volume = render(
            grid,
            item.anatomy,
            acquisition,
            contrast(params, subject.site_index, subject.scanner_index),
            item.age,
            subject.diagnosis == SYNTHETIC_CLASSES[1],
            params.effect,
            params.noise,
            rng,
        )
        if item.marker and params.shortcut is not None:
            gain = contrast(params, subject.site_index, subject.scanner_index).gain
            volume = add_marker(volume, params.shortcut.size, params.shortcut.strength * gain)
        (tmp / item.image).parent.mkdir(parents=True, exist_ok=True)
        write_nifti(tmp / item.image, volume, grid.affine, f"{description} T1w")
        mask = lesion_mask(grid, item.anatomy, item.active)
        write_nifti(tmp / item.mask, mask, grid.affine, f"{description} lesion mask")
    _write_bids_tables(tmp, images)
    manifest = _table(images, "", params.shortcut is not None)
    manifest.write_csv(tmp / MANIFEST_NAME, separator="\t", line_terminator="\n")
    record = {"identity": synthetic_identity(params), "fingerprint": synthetic_fingerprint(params)}
    (tmp / PARAMS_NAME).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def _write_bids_tables(tmp: Path, images: list[_Image]) -> None:
    """participants.tsv and sub-*/sub-*_sessions.tsv, so the cohort is also a BIDS-like tree."""
    subjects = list({m.subject.subject_id: m.subject for m in images}.values())
    pl.DataFrame(
        {
            "participant_id": [s.subject_id for s in subjects],
            "site": [s.site for s in subjects],
            "scanner": [s.scanner for s in subjects],
            "diagnosis": [s.diagnosis for s in subjects],
            "age": [s.age for s in subjects],
        }
    ).write_csv(tmp / "participants.tsv", separator="\t", line_terminator="\n")
    for subject in subjects:
        mine = [m for m in images if m.subject is subject]
        pl.DataFrame(
            {"session_id": [m.session_id for m in mine], "age": [m.age for m in mine]}
        ).write_csv(
            tmp / subject.subject_id / f"{subject.subject_id}_sessions.tsv",
            separator="\t",
            line_terminator="\n",
        )


def generate_cohort(out_dir: str | Path, params: SyntheticParams) -> Path:
    """Write the synthetic cohort of ``params`` into ``out_dir``; return its ``manifest.tsv``.

    The cohort is written into a temporary sibling directory and renamed into place, so a reader
    never sees a half-written cohort. If ``out_dir`` already holds a generation of the same
    parameters (and generator version) it is reused as is; if it holds anything else, a
    :class:`DataError` is raised. Two processes generating the same cohort at once both succeed.
    """
    check_params(params)
    out = Path(os.path.abspath(out_dir))
    manifest = _existing(out, params)
    if manifest is not None:
        return manifest
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(
            f"{out}: exists and is not a synthetic cohort of these parameters; "
            "choose a new output directory or delete this one"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        _write(tmp, params)
        tmp.chmod(0o755)
        try:
            tmp.rename(out)
        except OSError:  # another process finished first
            if _existing(out, params) is None:
                raise DataError(f"{out}: could not move the generated cohort into place") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / MANIFEST_NAME
