"""An optional shortcut in the synthetic cohort: a label-correlated marker outside the head.

Networks learn whatever separates the classes, including an artefact that happens to go with the
label at some sites (a scanner's burnt-in text, a ruler, a positioning marker). With
``params.shortcut`` the generator puts a bright cube in one corner of the field of view, outside
the head and far from every lesion, into a share of the images of each class at the listed sites
(``ad_rate`` of the AD images, ``cn_rate`` of the CN ones); other sites never have it. A network
that relies on it can reach a good AUC while its attribution maps point at the corner: the
localisation and weakly supervised segmentation scores of docs/explanations.md then fall, and
its performance drops at a site without the marker.

Whether an image carries the marker is drawn from its own random stream, so a cohort with a
shortcut has exactly the images of the same cohort without one, plus the marker.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from raybench_analysis.vocabulary import SYNTHETIC_CLASSES

from raybench.suite.schema import Shortcut

__all__ = ["SHORTCUT_STREAM", "add_marker", "has_marker", "marker_box"]

#: Random stream key of the marker draws (after the design, site, scanner, subject, session ones).
SHORTCUT_STREAM = 5


def has_marker(
    shortcut: Shortcut | None, seed: int, site: str, diagnosis: str, subject: int, session: int
) -> bool:
    """Whether the image of ``subject`` (index) at ``session`` carries the marker."""
    if shortcut is None or (shortcut.sites and site not in shortcut.sites):
        return False
    rate = shortcut.ad_rate if diagnosis == SYNTHETIC_CLASSES[1] else shortcut.cn_rate
    draw = np.random.default_rng([seed % 2**64, SHORTCUT_STREAM, subject, session]).random()
    return bool(draw < rate)


def marker_box(shape: Sequence[int], size: float) -> tuple[slice, ...]:
    """The marker's voxels: a cube of edge ``size`` × the volume's, one voxel in from a corner."""
    return tuple(slice(1, 1 + max(1, round(size * n))) for n in shape)


def add_marker(volume: np.ndarray, size: float, value: float) -> np.ndarray:
    """``volume`` with ``value`` added inside :func:`marker_box` (a new array)."""
    out = np.array(volume, copy=True)
    out[marker_box(out.shape, size)] += np.float32(value)
    return out
