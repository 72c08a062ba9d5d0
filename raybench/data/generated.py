"""``source: generated`` datasets: labelled samples from a generative model of another dataset.

A generated dataset is fitted to the images of the *training subjects* of its ``from`` dataset and
written as NIfTI files with a manifest, so it is an ordinary cohort afterwards (docs/generated.md).

Which subjects are "training subjects": those on the training side of the first outer fold (fold
0) of the suite's ``validation.outer`` protocol on the ``from`` dataset, drawn with the suite's
split seed exactly as the compiler draws them. Fold 0's test subjects are never seen by the
generator, so the models of fold 0 can be scored on the generated samples and compared with their
score on the real test fold, and fold 0's real test images are the real data to measure the shift
against (:func:`raybench_analysis.feature_distance`).

The generator is a plug-in: anything with the :class:`Generator` protocol (``fit`` on standardised
images and integer labels, ``sample`` images for given labels), registered in :data:`GENERATORS`
under a name that :data:`raybench_analysis.vocabulary.GENERATORS` lists. raybench ships ``cvae``, a
class-conditional variational autoencoder (Kingma & Welling 2014; Sohn, Lee & Yan 2015) built on
MONAI's ``VarAutoEncoder``.

The samples are cached in ``<root>/<name>-<key>``, ``key`` the content hash of the source
cohort's fingerprint, the fitted subjects, the label column and classes, and the generator
settings: the same inputs are never fitted twice, other inputs land elsewhere. The directory is
written aside and renamed into place, so a failure (a generator whose loss turns NaN) leaves
nothing half-written.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import nibabel as nib
import numpy as np
import polars as pl
import torch
from monai.networks.nets import VarAutoEncoder
from monai.transforms import Resize
from torch import nn
from torch.nn import functional as F

from raybench.data.cohort import Cohort
from raybench.data.fingerprint import canonical_hash
from raybench.data.nifti import write_nifti
from raybench.errors import DataError
from raybench.splits import protocol_seed, splitter_from_protocol
from raybench.suite.schema import GeneratedDataset, GeneratedParams

__all__ = [
    "GENERATORS",
    "GENERATOR_VERSION",
    "MANIFEST_NAME",
    "ConditionalVAE",
    "Generator",
    "fit_sample_ids",
    "generated_cohort",
    "generated_dir",
]

#: Bumped whenever the same settings would give other samples (it is part of the cache key).
GENERATOR_VERSION = 1
MANIFEST_NAME = "manifest.tsv"
#: Constant columns of every generated sample.
SESSION, SCANNER, SITE = "ses-1", "generated", "generated"


class Generator(Protocol):
    """What a generative model must do to be a ``source: generated`` generator.

    ``fit`` receives the training images, standardised to mean 0 and SD 1 over all voxels of all
    images, as a float32 tensor ``(N, 1, X, Y, Z)`` (spatial sizes multiples of 8), integer class
    labels ``(N,)`` and the number of classes; it returns the training loss of each epoch (a
    non-finite value aborts the dataset with an error). ``sample`` returns one standardised image
    ``(1, X, Y, Z)`` per requested label, as ``(M, 1, X, Y, Z)``. Both must be deterministic given
    ``seed`` on CPU.
    """

    def fit(
        self, images: torch.Tensor, labels: torch.Tensor, n_classes: int, seed: int
    ) -> list[float]: ...

    def sample(self, labels: torch.Tensor, seed: int) -> torch.Tensor: ...


class _ConditionalNet(VarAutoEncoder):
    """MONAI's VarAutoEncoder with the one-hot class given to the encoder (as constant input
    channels) and to the decoder (concatenated to the latent code)."""

    def __init__(self, shape: Sequence[int], n_classes: int, latent: int) -> None:
        super().__init__(
            spatial_dims=3,
            in_shape=(1 + n_classes, *shape),
            out_channels=1,
            latent_size=latent,
            channels=(16, 32, 64),
            strides=(2, 2, 2),
        )
        self.n_classes = n_classes
        self.decodeL = nn.Linear(latent + n_classes, self.decodeL.out_features)

    def encode_c(self, x: torch.Tensor, onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = onehot[:, :, None, None, None].expand(-1, -1, *x.shape[2:])
        return self.encode_forward(torch.cat([x, maps], dim=1))

    def decode_c(self, z: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        return self.decode_forward(torch.cat([z, onehot], dim=1), use_sigmoid=False)


class ConditionalVAE:
    """The ``cvae`` generator: a class-conditional VAE (Sohn, Lee & Yan 2015) on MONAI blocks.

    Trained with Adam on the Gaussian evidence lower bound, ``Σ (x − x̂)² + KL(q(z|x, y) ‖ N(0, I))``
    per image (Kingma & Welling 2014). Sampling decodes, with the requested class, codes drawn
    from a diagonal Gaussian fitted to the posterior means of that class's training images
    (ex-post density estimation, Ghosh et al. 2020, "From variational to deterministic
    autoencoders", ICLR), which keeps samples in their class where the decoder would ignore it.
    """

    def __init__(self, params: GeneratedParams) -> None:
        self.params = params
        self.net: _ConditionalNet | None = None
        self.prior: list[tuple[torch.Tensor, torch.Tensor]] = []

    def fit(
        self, images: torch.Tensor, labels: torch.Tensor, n_classes: int, seed: int
    ) -> list[float]:
        torch.manual_seed(seed)
        p = self.params
        self.net = net = _ConditionalNet(images.shape[2:], n_classes, p.latent)
        optimizer = torch.optim.Adam(net.parameters(), lr=p.lr)
        onehot = F.one_hot(labels, n_classes).float()
        order = torch.Generator().manual_seed(seed)
        losses = []
        net.train()
        for _ in range(p.epochs):
            total = 0.0
            for idx in torch.randperm(len(images), generator=order).split(p.batch_size):
                x, y = images[idx], onehot[idx]
                mu, logvar = net.encode_c(x, y)
                eps = torch.randn(mu.shape, generator=order)
                recon = net.decode_c(mu + eps * torch.exp(0.5 * logvar), y)
                rec = F.mse_loss(recon, x, reduction="sum") / len(x)
                kl = -0.5 * torch.sum(1 + logvar - mu**2 - logvar.exp()) / len(x)
                loss = rec + kl
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(x)
            losses.append(total / len(images))
            if not math.isfinite(losses[-1]):
                return losses
        # ex-post density of the codes, per class (Ghosh et al. 2020): sampling where the
        # training images of that class are, not from N(0, I), keeps samples on the data and in
        # their class even where the decoder would ignore the class input
        net.eval()
        with torch.no_grad():
            codes = net.encode_c(images, onehot)[0]
        self.prior = []
        for c in range(n_classes):
            mine = codes[labels == c]
            spread = mine.std(0, unbiased=False) if len(mine) > 1 else torch.ones(p.latent)
            self.prior.append((mine.mean(0), spread.clamp_min(1e-3)))
        return losses

    def sample(self, labels: torch.Tensor, seed: int) -> torch.Tensor:
        if self.net is None:
            raise RuntimeError("ConditionalVAE.sample before fit")
        self.net.eval()
        draws = torch.Generator().manual_seed(seed)
        eps = torch.randn(len(labels), self.params.latent, generator=draws)
        mean = torch.stack([self.prior[int(c)][0] for c in labels])
        spread = torch.stack([self.prior[int(c)][1] for c in labels])
        onehot = F.one_hot(labels, self.net.n_classes).float()
        with torch.no_grad():
            return self.net.decode_c(mean + spread * eps, onehot)


#: Generator name -> factory from the dataset's params (add a plug-in here and its name to
#: :data:`raybench_analysis.vocabulary.GENERATORS`).
GENERATORS: dict[str, Callable[[GeneratedParams], Generator]] = {"cvae": ConditionalVAE}


# --------------------------------------------------------------------------- which subjects


def fit_sample_ids(source: Cohort, suite: Any) -> tuple[str, ...]:
    """Sample ids of ``source`` that the generator sees: the training side of outer fold 0.

    The fold is drawn as the compiler draws it (``validation.outer`` with the suite's split
    seed), so the generator never sees a subject of fold 0's test side.
    """
    splitter = splitter_from_protocol(
        suite.validation.outer, suite.task, protocol_seed(int(suite.validation.seed), "outer")
    )
    return tuple(splitter.split(source.table)[0].train_ids)


# --------------------------------------------------------------------------- the cohort


def _identity(
    spec: GeneratedDataset, source: Cohort, fit_ids: Sequence[str], label: str, classes: list[str]
) -> dict[str, Any]:
    return {
        "generator": "raybench.generated",
        "version": GENERATOR_VERSION,
        "params": spec.params.model_dump(mode="json", by_alias=True),
        "source": source.fingerprint,
        "fit": canonical_hash(sorted(fit_ids)),
        "label": label,
        "classes": classes,
    }


def generated_dir(root: Path, spec: GeneratedDataset, key: str) -> Path:
    """``<root>/<name>-<first 12 hex of the key>``."""
    return Path(os.path.abspath(root)) / f"{spec.name}-{key[:12]}"


def _sample_labels(counts: Mapping[str, int], classes: list[str], n: int, seed: int) -> list[str]:
    """``n`` labels in the class proportions of the fitted subjects (largest remainder), in an
    order shuffled by ``seed``."""
    total = sum(counts.values())
    exact = [n * counts.get(c, 0) / total for c in classes]
    share = [math.floor(e) for e in exact]
    for i in sorted(range(len(classes)), key=lambda i: share[i] - exact[i])[: n - sum(share)]:
        share[i] += 1
    labels = [c for c, k in zip(classes, share, strict=True) for _ in range(k)]
    return [labels[i] for i in np.random.default_rng(seed).permutation(n)]


def _table(root: Path, label: str, labels: list[str], source: str) -> pl.DataFrame:
    ids = [f"gen-{i:05d}" for i in range(len(labels))]
    return pl.DataFrame(
        {
            "sample_id": ids,
            "subject_id": ids,
            "session_id": SESSION,
            "scanner": SCANNER,
            "site": SITE,
            "image": [str(root / "images" / f"{i}.nii.gz") for i in ids],
            label: labels,
            "generated_from": source,
        }
    )


def generated_cohort(
    spec: GeneratedDataset,
    source: Cohort,
    suite: Any,
    root: Path,
    *,
    materialize: bool = True,
) -> Cohort:
    """The cohort of a generated dataset, fitting and sampling its generator unless cached.

    ``source`` is the cohort of ``spec.params.from``; ``suite`` gives the task (a classification
    label to condition on) and the outer protocol (which subjects are fitted); ``root`` is the
    cache root. With ``materialize=False`` nothing is fitted or written: the table says where the
    samples would be. The fingerprint is the cache key, so ``plan`` and ``run`` agree on it.
    Raises :class:`~raybench.errors.DataError` (unknown task type, too few subjects, a loss that
    is not finite).
    """
    where = f"dataset {spec.name!r} (source: generated, from: {source.name!r})"
    task = suite.task
    if task.type != "classification":
        raise DataError(
            f"{where}: task.type={task.type!r}; the cvae generator is class-conditional and "
            "needs a classification task"
        )
    label = task.label
    if label not in source.table.columns:
        raise DataError(f"{where}: the source has no column task.label={label!r}")
    fit_ids = fit_sample_ids(source, suite)
    fit = source.table.filter(pl.col("sample_id").is_in(list(fit_ids))).sort("sample_id")
    classes = list(task.classes or sorted(fit[label].cast(pl.String).unique().to_list()))
    counts = dict(fit[label].cast(pl.String).value_counts().iter_rows())
    if len([c for c in classes if counts.get(c, 0)]) < 2:
        raise DataError(f"{where}: the fitted subjects hold fewer than two classes: {counts}")
    key = canonical_hash(_identity(spec, source, fit_ids, label, classes))
    final = generated_dir(root, spec, key)
    labels = _sample_labels(counts, classes, spec.params.samples, spec.params.seed)
    table = _table(final, label, labels, source.name)
    cohort = Cohort(spec.name, table, key, str(final / MANIFEST_NAME))
    if not materialize or (final / MANIFEST_NAME).is_file():
        return cohort
    final.parent.mkdir(parents=True, exist_ok=True)
    aside = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(aside, ignore_errors=True)
    try:
        _write(spec, fit, label, classes, labels, table, aside, where)
        try:
            os.rename(aside, final)
        except OSError:  # another process finished first: keep its copy
            if not (final / MANIFEST_NAME).is_file():
                raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)
    return cohort


def _write(
    spec: GeneratedDataset,
    fit: pl.DataFrame,
    label: str,
    classes: list[str],
    labels: list[str],
    table: pl.DataFrame,
    aside: Path,
    where: str,
) -> None:
    """Fit, sample and write the images and the manifest into the directory ``aside``."""
    p = spec.params
    first = nib.load(fit["image"][0])
    shape, affine = tuple(int(s) for s in first.shape[:3]), first.affine
    grid = tuple(8 * max(1, math.ceil(s / 8)) for s in shape)
    to_grid, back = Resize(grid, mode="trilinear"), Resize(shape, mode="trilinear")
    volumes = []
    for path in fit["image"]:
        data = np.asarray(nib.load(path).dataobj, dtype=np.float32)
        if data.shape[:3] != shape:
            raise DataError(f"{where}: {path} has shape {data.shape}, the first image {shape}")
        volumes.append(torch.as_tensor(to_grid(torch.as_tensor(data[None]))))
    images = torch.stack(volumes).float()
    mean, sd = float(images.mean()), float(images.std()) or 1.0
    index = {c: i for i, c in enumerate(classes)}
    y = torch.as_tensor([index[c] for c in fit[label].cast(pl.String)], dtype=torch.long)
    generator = GENERATORS[p.generator](p)
    losses = generator.fit((images - mean) / sd, y, len(classes), p.seed)
    bad = [i for i, v in enumerate(losses) if not math.isfinite(v)]
    if bad or not losses:
        raise DataError(
            f"{where}: generator {p.generator!r} did not converge: the training loss is "
            f"{losses[bad[0]] if bad else 'empty'} at epoch {bad[0] + 1 if bad else 0} of "
            f"{p.epochs}; lower params.lr (now {p.lr:g}) or check the source images. Nothing "
            "was written."
        )
    wanted = torch.as_tensor([index[c] for c in labels], dtype=torch.long)
    samples = generator.sample(wanted, p.seed) * sd + mean
    if not torch.isfinite(samples).all():
        raise DataError(f"{where}: generator {p.generator!r} drew non-finite voxels")
    (aside / "images").mkdir(parents=True)
    for sid, volume in zip(table["sample_id"], samples, strict=True):
        array = np.asarray(back(volume), dtype=np.float32)[0]
        write_nifti(aside / "images" / f"{sid}.nii.gz", array, affine, f"raybench {p.generator}")
    relative = table.with_columns(
        pl.concat_str(pl.lit("images/"), "sample_id", pl.lit(".nii.gz")).alias("image")
    )
    relative.write_csv(aside / MANIFEST_NAME, separator="\t")
