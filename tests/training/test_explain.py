"""Explanations: metrics with known truth, a network with a known answer, determinism, bad input."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import polars as pl
import pytest
import torch

from raybench.data.cohort import Cohort
from raybench.errors import SuiteError
from raybench.plan.config import ExplainConfig, ExplanationMethodConfig
from raybench.store.schemas import SCHEMAS
from raybench.training.explain import (
    attribute,
    deletion_insertion,
    explain_samples,
    localisation,
    resolve_layer,
    select_samples,
    sparseness,
)
from raybench.training.explain_checks import (
    THRESHOLDS,
    choose_threshold,
    randomised_copy,
    rank_correlation,
    segment,
    segmentation_scores,
    slices_npz,
)
from raybench.training.trial import TrialContext, run_trial

SHAPE = (16, 16, 16)


def _lesion() -> tuple[np.ndarray, np.ndarray]:
    """A brain-like image (1 inside a ball, 0 outside) with a bright lesion, and its mask."""
    grid = np.stack(np.meshgrid(*(np.arange(s) for s in SHAPE), indexing="ij"))
    centre = np.array(SHAPE).reshape(3, 1, 1, 1) / 2
    brain = ((grid - centre) ** 2).sum(0) < 6.5**2
    mask = ((grid - np.array([9, 7, 8]).reshape(3, 1, 1, 1)) ** 2).sum(0) < 2.5**2
    image = brain * 1.0 + 1.5 * mask
    return image.astype(np.float32), mask.astype(np.uint8)


class LesionMean(torch.nn.Module):
    """A hand-built network whose positive-class logit is the mean intensity inside the lesion."""

    def __init__(self, mask: np.ndarray) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 1, kernel_size=1, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
        weights = torch.as_tensor(mask, dtype=torch.float32) / float(mask.sum())
        self.register_buffer("weights", weights[None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (self.conv(x) * self.weights).sum(dim=(1, 2, 3, 4))
        return torch.stack([torch.zeros_like(score), score], dim=1)


METHODS = [
    ExplanationMethodConfig("gradcam", {"layer": "auto"}),
    ExplanationMethodConfig("gradcampp", {"layer": "conv"}),
    ExplanationMethodConfig("occlusion", {"window": 4, "stride": 2}),
    ExplanationMethodConfig("gradient"),
    ExplanationMethodConfig("smoothgrad", {"samples": 4, "sigma": 0.1}),
    ExplanationMethodConfig("integrated_gradients", {"steps": 8}),
    ExplanationMethodConfig("kernel_shap", {"window": 4, "samples": 64}),
    ExplanationMethodConfig("lime", {"window": 4, "samples": 64}),
]


def test_the_mask_itself_localises_perfectly_and_a_random_map_at_chance() -> None:
    _, mask = _lesion()
    perfect = localisation(mask.astype(float), mask)
    assert perfect == {
        "auroc": 1.0,
        "mass_accuracy": 1.0,
        "rank_accuracy": 1.0,
        "pointing_game": 1.0,
        "energy_pointing_game": 1.0,
    }
    rng = np.random.default_rng(0)
    share = mask.mean()
    scores = [localisation(rng.random(SHAPE), mask) for _ in range(200)]
    auroc = np.array([s["auroc"] for s in scores])
    # the null SD of a Mann-Whitney AUROC with k mask voxels among n: sqrt((n + 1) / (12 k (n - k)))
    n, k = mask.size, int(mask.sum())
    sd = np.sqrt((n + 1) / (12 * k * (n - k)))
    assert abs(auroc.mean() - 0.5) < 4 * sd / np.sqrt(len(auroc))
    assert np.mean(np.abs(auroc - 0.5) < 2 * sd) > 0.9
    assert np.mean([s["mass_accuracy"] for s in scores]) == pytest.approx(share, abs=0.01)
    assert np.mean([s["rank_accuracy"] for s in scores]) == pytest.approx(share, abs=0.02)
    assert np.mean([s["pointing_game"] for s in scores]) == pytest.approx(share, abs=0.05)


def test_empty_mask_and_non_finite_maps_are_undefined_not_dropped() -> None:
    _, mask = _lesion()
    assert all(np.isnan(v) for v in localisation(np.ones(SHAPE), np.zeros(SHAPE)).values())
    bad = np.ones(SHAPE)
    bad[0, 0, 0] = np.nan
    assert all(np.isnan(v) for v in localisation(bad, mask).values())
    assert np.isnan(sparseness(np.zeros(SHAPE)))


def test_sparseness_is_zero_for_a_flat_map_and_near_one_for_a_single_voxel() -> None:
    assert sparseness(np.ones(SHAPE)) == pytest.approx(0.0)
    spike = np.zeros(SHAPE)
    spike[3, 3, 3] = 5.0
    n = spike.size
    assert sparseness(spike) == pytest.approx((n - 1) / n)


@pytest.mark.parametrize("method", METHODS, ids=[m.method for m in METHODS])
def test_every_method_finds_the_lesion_a_known_network_looks_at(
    method: ExplanationMethodConfig,
) -> None:
    image, mask = _lesion()
    net = LesionMean(mask)
    x = torch.as_tensor(image)[None, None]
    attr = attribute(net, x, 1, method, seed=0)
    assert attr.shape == SHAPE and np.isfinite(attr).all()
    scores = localisation(attr, mask)
    assert scores["auroc"] > 0.9, scores
    assert scores["pointing_game"] == 1.0 or scores["energy_pointing_game"] > 0.5, scores
    # deletion removes the evidence faster along the map than in a random order
    score = lambda b: net(b)[:, 1]  # noqa: E731
    deletion, insertion = deletion_insertion(score, x, attr)
    random_deletion, random_insertion = deletion_insertion(
        score, x, np.random.default_rng(1).random(SHAPE)
    )
    assert deletion < random_deletion and insertion > random_insertion


@pytest.mark.parametrize("method", METHODS[:2] + METHODS[4:], ids=lambda m: m.method)
def test_methods_are_deterministic_given_the_seed(method: ExplanationMethodConfig) -> None:
    image, mask = _lesion()
    net = LesionMean(mask)
    x = torch.as_tensor(image)[None, None]
    assert np.array_equal(attribute(net, x, 1, method, 3), attribute(net, x, 1, method, 3))


def test_a_layer_the_network_lacks_is_a_located_error_with_a_suggestion() -> None:
    _, mask = _lesion()
    net = LesionMean(mask)
    assert resolve_layer(net, "auto") == "conv"
    with pytest.raises(SuiteError, match=r"layer='cnov' is not a module.*did you mean 'conv'"):
        resolve_layer(net, "cnov")
    with pytest.raises(SuiteError, match="needs a 3-D convolution"):
        resolve_layer(torch.nn.Sequential(torch.nn.Linear(2, 2)), "auto")


def test_samples_are_stratified_seeded_and_independent_of_row_order() -> None:
    rows = [{"sample_id": f"s{i:02d}"} for i in range(20)]
    labels = ["AD" if i < 5 else "CN" for i in range(20)]
    chosen = select_samples(rows, labels, 8, seed=4)
    assert len(chosen) == 8 and sum(labels[i] == "AD" for i in chosen) == 2
    assert chosen == select_samples(rows, labels, 8, seed=4)
    order = list(reversed(range(20)))
    again = select_samples([rows[i] for i in order], [labels[i] for i in order], 8, seed=4)
    assert sorted(rows[order[i]]["sample_id"] for i in again) == sorted(
        rows[i]["sample_id"] for i in chosen
    )
    assert select_samples(rows, labels, 50, seed=0) == list(range(20))
    # a rare stratum still gets one sample when n allows
    assert any(labels[i] == "AD" for i in select_samples(rows, labels, 2, seed=1))


TRIAL_METHODS = [
    {"method": "gradcam", "params": {"layer": "auto"}},
    {"method": "gradient", "params": {}},
    {"method": "kernel_shap", "params": {"window": 8, "samples": 16}},
]


def test_a_refit_trial_explains_its_test_samples_identically_twice(
    cohort: Cohort, spec_of: Any, tmp_path: Path
) -> None:
    explain = {"methods": TRIAL_METHODS, "samples": 2, "save_maps": 1, "threshold_samples": 2}
    noise = [{"type": "gaussian_noise", "severity": 0.1, "id": "noise", "params": {}}]
    spec = spec_of(cohort, evaluation={"explain": explain, "perturbations": noise})
    first = run_trial(spec, cohort, TrialContext(tmp_path / "a"))
    second = run_trial(spec, cohort, TrialContext(tmp_path / "b"))
    assert first.explanations is not None and first.explanations.schema.equals(
        SCHEMAS["explanations"]
    )
    frame = pl.from_arrow(first.explanations)
    assert set(frame["sample_id"]) == set(spec.test_ids)
    assert set(frame["method"]) == {m["method"] for m in TRIAL_METHODS}
    assert set(frame["target"]) == {"AD"}  # the positive class of a binary task
    # sub-06 is CN (empty mask): localisation undefined with a note, faithfulness defined
    cn = frame.filter((pl.col("sample_id") == "sub-06_ses-1") & (pl.col("metric") == "auroc"))
    assert cn["value"].is_nan().all() and cn["note"].str.contains("empty").all()
    ad = frame.filter((pl.col("sample_id") == "sub-07_ses-1") & (pl.col("metric") == "auroc"))
    assert ad["value"].is_finite().all() and ad["note"].is_null().all()
    # weakly supervised segmentation: the AD test image scored at its method's threshold
    dice = frame.filter((pl.col("sample_id") == "sub-07_ses-1") & (pl.col("metric") == "dice"))
    assert dice.height == len(TRIAL_METHODS) and dice["threshold"].is_not_null().all()
    assert ((dice["value"] >= 0) & (dice["value"] <= 1)).all()
    # one randomisation row per sample and method; one stability row per perturbation too
    for metric, label in (("randomisation_spearman", "none"), ("perturbation_spearman", None)):
        rows = frame.filter(pl.col("metric") == metric)
        assert rows.height == 2 * len(TRIAL_METHODS)
        assert rows["perturbation"].unique().to_list() == [label or "noise"]
    timing = pl.col("metric") != "seconds"
    assert frame.filter(timing).equals(pl.from_arrow(second.explanations).filter(timing))
    # one NIfTI map per method and one NPZ of slices for the kept sample
    assert first.maps == second.maps and len(first.maps) == len(TRIAL_METHODS) + 1
    path = next(iter(first.maps))
    assert path.startswith(f"maps/{spec.trial_id}/sub-06_ses-1_")
    saved = tmp_path / "map.nii.gz"
    saved.write_bytes(first.maps[path])
    assert nib.load(saved).shape == (16, 16, 16)
    slices = np.load(io.BytesIO(first.maps[f"maps/{spec.trial_id}/sub-06_ses-1_slices.npz"]))
    assert slices["image_z"].shape == (16, 16) and slices["map_gradcam_x"].shape == (16, 16)


def test_the_segmentation_threshold_never_depends_on_the_test_fold(
    cohort: Cohort, spec_of: Any, tmp_path: Path
) -> None:
    """Same training and validation samples, another test fold: the same thresholds."""
    explain = {"methods": TRIAL_METHODS[:2], "samples": 2, "save_maps": 0, "threshold_samples": 2,
               "randomisation": False}  # fmt: skip
    spec = spec_of(cohort, evaluation={"explain": explain})
    other = dataclasses.replace(spec, test_ids=("sub-03_ses-1", "sub-07_ses-1"))
    chosen = []
    for s in (spec, other):
        frame = pl.from_arrow(run_trial(s, cohort, TrialContext(tmp_path)).explanations)
        rows = frame.filter(pl.col("metric") == "dice").drop_nulls("threshold")
        chosen.append(dict(rows.select("method", "threshold").unique().rows()))
    assert chosen[0] == chosen[1] and set(chosen[0]) == {"gradcam", "gradient"}


def test_search_trials_and_suites_without_explanations_explain_nothing(
    cohort: Cohort, spec_of: Any, tmp_path: Path
) -> None:
    explain = {"methods": TRIAL_METHODS[:1], "samples": 2, "save_maps": 0}
    search = spec_of(cohort, evaluation={"explain": explain}, stage="search")
    assert run_trial(search, cohort, TrialContext(tmp_path)).explanations is None
    plain = run_trial(spec_of(cohort), cohort, TrialContext(tmp_path))
    assert plain.explanations is None and plain.maps == {}
    assert "explain" not in spec_of(cohort).settings.to_dict()["evaluation"]


def test_explained_trial_commits_its_table_and_maps_and_the_analysis_reads_them(
    cohort: Cohort, spec_of: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from types import SimpleNamespace

    import raybench_analysis as rba

    from raybench.runner.execute import execute_trial
    from raybench.store import ResultStore

    store = ResultStore(tmp_path / "res")
    explain = {"methods": TRIAL_METHODS[:2], "samples": 2, "save_maps": 1}
    for seed in (0, 1):
        spec = spec_of(cohort, evaluation={"explain": explain}, seed=seed, trial_id=f"t{seed}")
        ctx = SimpleNamespace(
            cache_dir=tmp_path / "cache",
            device="cpu",
            num_threads=1,
            on_epoch=None,
            attempt=1,
            node="here",
            store=store,
        )
        store.commit(spec.trial_id, execute_trial(spec, cohort, ctx))
    res = rba.load(tmp_path / "res")
    table = res.explanations.collect()
    # trials x samples x methods x metrics (9 + dice, hd95 and the randomisation check)
    assert table.height == 2 * 2 * 2 * 12
    for path in table["map_path"].drop_nulls().unique():
        assert nib.load(tmp_path / "res" / path).shape == (16, 16, 16)
    summary = rba.explanations(res, metrics="deletion_auc", n_boot=200)
    assert set(summary["method"]) == {"gradcam", "gradient"}
    assert summary["n_seed"].to_list() == [2, 2]
    # `raybench analyze` and the run's closing summary show them (the same summarize tables)
    from raybench.cli.summary import print_summary

    closing = rba.summarize(tmp_path / "res", n_boot=200)
    assert {"explanations", "randomisation"} <= set(closing)
    assert set(closing["randomisation"]["status"]) <= {"passes", "fails", "inconclusive"}
    capsys.readouterr()
    print_summary(closing)
    printed = capsys.readouterr().out
    assert "explanations: localisation" in printed and "model-randomisation check" in printed


def test_grad_cam_leaves_no_hook_on_the_network() -> None:
    image, mask = _lesion()
    net = LesionMean(mask)
    x = torch.as_tensor(image)[None, None]
    for method in METHODS[:2]:
        attribute(net, x, 1, method, 0)
    assert not net.conv._forward_hooks and not net.conv._backward_hooks


# --------------------------------------------------------------------------- checks of the maps


class LinearScore(torch.nn.Module):
    """A linear classifier over the voxels whose positive-class weights are the lesion mask."""

    def __init__(self, mask: np.ndarray) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(mask.size, 2, bias=False)
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.weight[1] = torch.as_tensor(mask.ravel(), dtype=torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def _explain(
    net: torch.nn.Module,
    tests: list[tuple[np.ndarray, np.ndarray]],
    vals: list[tuple[np.ndarray, np.ndarray]],
    methods: list[ExplanationMethodConfig],
    **config: Any,
) -> pl.DataFrame:
    """``explain_samples`` on hand-made images (no training): its rows as a frame."""

    def samples(pairs: list[tuple[np.ndarray, np.ndarray]], kind: str) -> list[dict[str, Any]]:
        return [
            {
                "row": {"sample_id": f"{kind}{i}", "subject_id": f"{kind}{i}",
                        "session_id": "ses-1", "scanner": "s", "site": "a"},
                "image": torch.as_tensor(image)[None, None],
                "mask": mask,
            }
            for i, (image, mask) in enumerate(pairs)
        ]  # fmt: skip

    out = explain_samples(
        net,
        samples(tests, "test"),
        ExplainConfig(tuple(methods), **{"save_maps": 0, **config}),
        target_of=lambda x: (1, "AD"),
        score_of=lambda t: lambda b: net(b)[:, t],
        trial_seed=0,
        base_row={"trial_id": "t"},
        affine_of=lambda row: np.diag([2.0, 2.0, 2.0, 1.0]),
        val_samples=samples(vals, "val"),
        perturbations=[("flip", lambda x, sid: torch.flip(x, dims=(2,)))],
    )
    return pl.DataFrame(out.rows)


def _shifted(offset: int) -> tuple[np.ndarray, np.ndarray]:
    image, mask = _lesion()
    return np.roll(image, offset, axis=0), np.roll(mask, offset, axis=0)


def test_a_map_on_the_lesion_segments_it_at_the_threshold_chosen_on_validation() -> None:
    image, mask = _lesion()
    net = LinearScore(mask)
    gradient = ExplanationMethodConfig("gradient")
    frame = _explain(net, [(image, mask)], [(image, mask), _shifted(0)], [gradient])
    row = frame.filter(pl.col("metric") == "dice").row(0, named=True)
    # the gradient of a linear score is its weights, the mask itself: a perfect segmentation
    assert row["value"] == pytest.approx(1.0) and row["threshold"] in THRESHOLDS
    hd95 = frame.filter(pl.col("metric") == "hd95")["value"][0]
    assert hd95 == pytest.approx(0.0)
    # without validation samples (or with only lesion-free ones) nothing chooses the threshold
    empty = (image, np.zeros_like(mask))
    for vals in ([], [empty]):
        none = _explain(net, [(image, mask)], vals, [gradient]).filter(pl.col("metric") == "dice")
        assert none["value"].is_nan().all() and none["note"].str.contains("validation").all()
    # threshold_samples=0: no segmentation rows at all
    off = _explain(net, [(image, mask)], [(image, mask)], [gradient], threshold_samples=0)
    assert not off["metric"].is_in(["dice", "hd95"]).any()


def test_the_threshold_comes_from_validation_maps_only() -> None:
    """Validation maps decide; what the test images and masks are never changes the choice."""
    rng = np.random.default_rng(0)
    _, mask = _lesion()
    val_map = mask * 1.0 + 0.6 * rng.random(SHAPE)  # noise up to 0.6: above it, the lesion
    fraction, best = choose_threshold([val_map], [mask])
    assert fraction > 0.6 / 1.6 and best == pytest.approx(1.0)
    assert choose_threshold([val_map], [np.zeros_like(mask)]) is None
    image, _ = _lesion()
    net = LesionMean(mask)
    method = ExplanationMethodConfig("gradient")
    vals = [(image, mask)]
    frames = [_explain(net, tests, vals, [method]) for tests in ([(image, mask)], [_shifted(3)])]
    chosen = [f.filter(pl.col("metric") == "dice")["threshold"][0] for f in frames]
    assert chosen[0] == chosen[1]


def test_segmentation_scores_follow_monai_on_a_shifted_cube() -> None:
    truth = np.zeros(SHAPE)
    truth[4:8, 4:8, 4:8] = 1
    attr = np.roll(truth, 1, axis=0)  # 3 of 4 slices overlap: Dice 3/4
    scores = segmentation_scores(attr, truth, 0.5, spacing=(2.0, 1.0, 1.0))
    assert scores["dice"] == pytest.approx(0.75)
    assert scores["hd95"] == pytest.approx(2.0)  # one voxel along x, 2 mm
    assert np.isnan(segmentation_scores(-attr, truth, 0.5, (1, 1, 1))["hd95"])
    assert not segment(np.zeros(SHAPE), 0.1).any()


def test_randomising_the_weights_changes_a_faithful_map_and_keeps_the_network() -> None:
    """Adebayo et al. (2018): the gradient of a linear score is its weights; randomised, they
    are unrelated to the trained ones, so the rank correlation falls to about 0."""
    image, mask = _lesion()
    net = LinearScore(mask)
    before = net.linear.weight.detach().clone()
    copy = randomised_copy(net, seed=1)
    assert torch.equal(net.linear.weight, before)
    assert not torch.equal(copy.linear.weight, before)
    assert torch.equal(copy.linear.weight, randomised_copy(net, seed=1).linear.weight)
    frame = _explain(net, [(image, mask)], [], [ExplanationMethodConfig("gradient")])
    rho = frame.filter(pl.col("metric") == "randomisation_spearman")["value"][0]
    assert abs(rho) < 0.2
    # stability: a flipped image moves nothing in a linear map's gradient (it is the weights)
    flip = frame.filter(pl.col("metric") == "perturbation_spearman").row(0, named=True)
    assert flip["perturbation"] == "flip" and flip["value"] == pytest.approx(1.0)
    off = _explain(net, [(image, mask)], [], [ExplanationMethodConfig("gradient")],
                   randomisation=False, stability=False)  # fmt: skip
    assert not off["metric"].is_in(["randomisation_spearman", "perturbation_spearman"]).any()


def test_max_sensitivity_is_zero_for_a_fixed_map_and_bounded_by_the_noise() -> None:
    """Yeh et al. (2019): the gradient of a linear score is its weights whatever the image, so no
    noise moves it (0); its Integrated Gradients from 0 are image x weights, so noise d moves them
    by d x weights: at most r ||w|| / ||x w|| relative, r the noise's half-width."""
    image, mask = _lesion()
    net = LinearScore(mask)
    methods = [ExplanationMethodConfig("gradient"), ExplanationMethodConfig("integrated_gradients")]
    ask = {"samples": 4, "radius": 0.05}

    def values(**config: Any) -> dict[str, float]:
        frame = _explain(net, [(image, mask)], [], methods, randomisation=False, stability=False,
                         **config).filter(pl.col("metric") == "max_sensitivity")  # fmt: skip
        return dict(zip(frame["method"], frame["value"], strict=True))

    got = values(max_sensitivity=ask)
    assert got["gradient"] == pytest.approx(0.0, abs=1e-6)
    w = mask.astype(np.float64)
    bound = 0.05 * float(image.max() - image.min()) * np.linalg.norm(w) / np.linalg.norm(image * w)
    assert 0.3 * bound < got["integrated_gradients"] <= bound * (1 + 1e-4)
    assert values(max_sensitivity=ask) == got  # seeded
    assert values() == {}  # opt-in


def test_rank_correlation_is_undefined_for_a_constant_map() -> None:
    a = np.random.default_rng(0).random(SHAPE)
    assert rank_correlation(a, a) == pytest.approx(1.0)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    assert np.isnan(rank_correlation(a, np.zeros(SHAPE)))


def test_slices_are_deterministic_and_cross_at_the_lesion() -> None:
    image, mask = _lesion()
    first = slices_npz(image, mask, {"gradient": image * 2})
    assert first == slices_npz(image, mask, {"gradient": image * 2})
    arrays = np.load(io.BytesIO(first))
    centre = tuple(arrays["centre"])
    assert mask[centre] == 1
    assert np.array_equal(arrays["map_gradient_y"], 2 * image[:, centre[1], :])
    assert tuple(np.load(io.BytesIO(slices_npz(image, None, {})))["centre"]) == (8, 8, 8)
