"""The report's external-validation section: shown only when the run has external predictions."""

from __future__ import annotations

from raybench_analysis.report.html import Section, escape, table
from raybench_analysis.summarize import Summary

__all__ = ["external_section"]

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
