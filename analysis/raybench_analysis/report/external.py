"""The report's external-validation sections: shown only when the run has external predictions
(and, for the feature distance, networks scored on a generated dataset)."""

from __future__ import annotations

from raybench_analysis.report.html import Section, escape, table
from raybench_analysis.summarize import Summary

__all__ = ["external_section", "feature_shift_section"]

_KEYS = [("development", "trained on"), ("dataset", "external"), ("protocol", "protocol")]


def external_section(summary: Summary) -> Section | None:
    """Performance on each external dataset, the generalisation gap and paired comparisons
    (the ``external``, ``generalisation_gap`` and ``external_comparisons`` tables); None without
    external rows."""
    if "external" not in summary:
        return None
    alpha = float(summary.settings.get("alpha", 0.05))
    levels = " > ".join(summary.settings.get("hierarchy") or [])
    parts = [
        "<p>The saved refit models evaluated on datasets never used for training or selection "
        f"(<code>split = external</code>), with {100 * (1 - alpha):g}% intervals resampling each "
        f"external dataset's own {escape(levels)}. The generalisation gap is the internal "
        "(cross-validated) estimate minus the external one for the same models; its interval "
        "combines two independent cluster bootstraps (docs/validation.md).</p>",
        "<h3>Performance on external datasets</h3>",
        table(
            summary["external"],
            [*_KEYS, ("model", "model"), ("metric", "metric"), ("estimate", "estimate"),
             ("ci_low", "ci low"), ("ci_high", "ci high"), ("n_site", "sites"),
             ("n_subject_id", "subjects")],
            name="external",
        ),
    ]  # fmt: skip
    if "generalisation_gap" in summary:
        parts += [
            "<h3>Generalisation gap (internal − external)</h3>",
            table(
                summary["generalisation_gap"],
                [*_KEYS, ("model", "model"), ("metric", "metric"), ("internal", "internal"),
                 ("external", "external"), ("estimate", "gap"), ("ci_low", "ci low"),
                 ("ci_high", "ci high"), ("p_value", "p")],
                name="generalisation_gap",
            ),
        ]  # fmt: skip
    if "external_comparisons" in summary:
        parts += [
            "<h3>Paired comparisons on the external subjects</h3>",
            table(
                summary["external_comparisons"],
                [*_KEYS, ("model_a", "a"), ("model_b", "b"), ("estimate", "difference"),
                 ("ci_low", "ci low"), ("ci_high", "ci high"), ("p_adjusted", "p (adjusted)")],
                name="external_comparisons",
            ),
        ]  # fmt: skip
    return Section("external", "External validation", "".join(parts))


def feature_shift_section(summary: Summary) -> Section | None:
    """The ``feature_shift`` table: how far generated samples are from the real test images in
    the network's penultimate features, next to the distance between two real halves."""
    if "feature_shift" not in summary:
        return None
    text = (
        "<p>Each network scored on a generated dataset, on its penultimate-layer features: the "
        "distance between two halves of its real test images (the value of no shift at this "
        "sample size) and between one half and as many generated samples of the same classes, "
        "each with a permutation p-value of &ldquo;same distribution&rdquo; (MMD², Gretton et "
        "al. 2012; Fréchet distance, Dowson &amp; Landau 1982; docs/generated.md). Read a change "
        "of score on the generated data against this shift.</p>"
    )
    body = table(
        summary["feature_shift"],
        [("dataset", "generated"), ("development", "from"), ("model", "model"),
         ("seed", "seed"), ("distance", "distance"), ("halves", "real halves"),
         ("halves_p", "p"), ("generated", "real vs generated"), ("generated_p", "p"),
         ("n_half", "images per side")],
        name="feature_shift",
    )  # fmt: skip
    return Section("feature_shift", "Shift of generated data", text + body)
