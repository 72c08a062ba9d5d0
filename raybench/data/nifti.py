"""NIfTI helpers: deterministic writing and header-only checks (the data is never decoded)."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import nibabel as nib
import numpy as np

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray, description: str) -> None:
    """Write ``array`` as a gzipped NIfTI-1 file whose bytes depend only on its content.

    The gzip stream is made with ``mtime=0`` and no file name, so the same array gives the same
    bytes on every run (nibabel's own writer would stamp the current time).
    """
    image = nib.Nifti1Image(array, affine)
    header = image.header
    header.set_xyzt_units("mm", "sec")
    header["descrip"] = description.encode()[:79]
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    path.write_bytes(gzip.compress(image.to_bytes(), compresslevel=6, mtime=0))


def _gzip_size(path: Path) -> int:
    """The uncompressed size recorded in a gzip trailer (ISIZE, modulo 2**32)."""
    with path.open("rb") as handle:
        handle.seek(-4, os.SEEK_END)
        return int(struct.unpack("<I", handle.read(4))[0])


def nifti_problem(path: str | Path) -> tuple[tuple[int, ...] | None, str | None]:
    """Check one image file from its header alone; return ``(shape, None)`` or ``(None, problem)``.

    Checks: the file exists and is readable, has a NIfTI suffix, nibabel parses its header, the
    image is 3-D with positive finite voxel sizes, and the file is as long as the header implies
    (for ``.nii.gz`` the gzip trailer's size is compared, which catches truncated downloads
    without decompressing anything).
    """
    path = Path(path)
    if not path.exists():
        return None, "file not found"
    if not path.is_file():
        return None, "is a directory, not a file"
    if not os.access(path, os.R_OK):
        return None, "file is not readable (permission denied)"
    if not path.name.endswith(NIFTI_SUFFIXES):
        return None, f"not a NIfTI file name (allowed suffixes: {', '.join(NIFTI_SUFFIXES)})"
    try:
        image = nib.load(path)
        shape = tuple(int(n) for n in image.shape)
        zooms = np.asarray(image.header.get_zooms(), dtype=float)
        offset = int(getattr(image.dataobj, "offset", image.header.get_data_offset()))
        itemsize = image.header.get_data_dtype().itemsize
    except Exception as exc:  # nibabel raises many types for corrupt files
        return None, f"corrupt or not a NIfTI file ({type(exc).__name__}: {exc})"
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        return None, f"not a NIfTI image ({type(image).__name__})"
    if len(shape) != 3:
        return None, (
            f"image is {len(shape)}-D with shape {shape}; allowed: 3-D volumes only "
            "(take one volume, e.g. nibabel's img.slicer[..., 0])"
        )
    if not np.all(np.isfinite(zooms[:3])) or np.any(zooms[:3] <= 0):
        return None, f"voxel sizes {tuple(zooms[:3])} must be positive and finite"
    expected = offset + int(np.prod(shape)) * itemsize
    if path.name.endswith(".gz"):
        recorded = _gzip_size(path)
        if recorded not in (0, expected % 2**32):
            return None, (
                f"corrupt or truncated gzip: its trailer records {recorded} bytes but the header "
                f"implies {expected}; re-copy or re-create the file"
            )
    elif path.stat().st_size < expected:
        return None, (
            f"truncated: {path.stat().st_size} bytes but the header implies {expected}; "
            "re-copy or re-create the file"
        )
    return shape, None
