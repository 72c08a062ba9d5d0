"""The report's learning-curve section: shown only when the run drew training subsets.

Reads the ``learning_curve``, ``learning_curve_fit`` and ``sampling_variance`` tables of
:func:`raybench_analysis.summarize` (docs/training-distribution.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import matplotlib
import numpy as np
import polars as pl
from matplotlib.figure import Figure

from raybench_analysis.learning_curve import power_law
from raybench_analysis.report import figures as F
from raybench_analysis.report.html import Section, table

__all__ = ["learning_curve_plot", "learning_section"]


def learning_curve_plot(
    curve: pl.DataFrame, fit: pl.DataFrame | None, *, colors: Mapping[str, str]
) -> Figure:
    """The metric against training subjects (log scale) per model, with intervals and the law.

    The fitted law is drawn solid over the observed sizes and dashed up to twice the largest,
    where :meth:`~raybench_analysis.LearningCurveFit.subjects_needed` starts to warn.
    """
    with matplotlib.rc_context(F._RC):
        fig = F._figure(5.0, 3.2)
        ax = fig.add_subplot(1, 1, 1)
        for model in [m for m in colors if m in set(curve["model"].to_list())]:
            rows = curve.filter(pl.col("model") == model).sort("n_train")
            ax.errorbar(rows["n_train"].to_numpy(), rows["estimate"].to_numpy(),
                        yerr=F._errors(rows), fmt="o", color=colors[model], capsize=3, ms=4,
                        label=model)  # fmt: skip
            law = None if fit is None else fit.filter(pl.col("model") == model)
            if law is not None and law.height:
                p = law.row(0, named=True)
                inside = np.geomspace(p["n_min"], p["n_max"], 50)
                beyond = np.geomspace(p["n_max"], 2 * p["n_max"], 20)
                for n, style in ((inside, "-"), (beyond, "--")):
                    ax.plot(n, power_law(n, p["a"], p["b"], p["c"]), style, color=colors[model],
                            lw=1)  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("training subjects")
        ax.set_ylabel(str(curve["metric"][0]))
        ax.grid(color="#eeeeee", lw=0.6)
        ax.legend(frameon=False, fontsize=7)
    return fig


def learning_section(
    summary: Any, draw: Callable[[Figure, str, str], str], colors: Mapping[str, str]
) -> Section | None:
    """The "Learning curves" section, or None when the run has no training draws."""
    if "learning_curve" not in summary:
        return None
    curve = summary["learning_curve"]
    fit = summary.get("learning_curve_fit")
    parts = [
        "<p>The score against the number of training subjects, each size drawn from the outer "
        "training folds (<code>validation.train_resampling</code>), with hierarchical bootstrap "
        "intervals; the line is the inverse power law <i>a − b·n<sup>−c</sup></i> fitted to the "
        "points (dashed: extrapolation up to twice the largest training set). Extrapolating "
        "further is a hypothesis, not a measurement (docs/training-distribution.md).</p>"
    ]
    groups = (
        curve.partition_by("dataset", as_dict=True)
        if "dataset" in curve.columns
        else {(None,): curve}
    )
    for (dataset,), part in groups.items():
        law = fit.filter(pl.col("dataset") == dataset) if fit is not None and dataset else fit
        parts.append(
            draw(
                learning_curve_plot(part, law, colors=colors),
                f"learning-curve-{dataset or 'all'}",
                "Learning curve: metric by training subjects, with the fitted inverse power law",
            )
        )
    cols = [("dataset", "dataset"), ("model", "model"), ("train_fraction", "fraction"),
            ("n_train", "subjects"), ("n_draws", "draws"), ("estimate", "estimate"),
            ("ci_low", "ci low"), ("ci_high", "ci high")]  # fmt: skip
    parts.append(table(curve, cols, name="learning_curve"))
    if fit is not None:
        fit_cols = [("dataset", "dataset"), ("model", "model"), ("a", "a"), ("a_ci_low", "a low"),
                    ("a_ci_high", "a high"), ("b", "b"), ("c", "c"), ("c_ci_low", "c low"),
                    ("c_ci_high", "c high"), ("n_max", "largest n")]  # fmt: skip
        parts.append(table(fit, fit_cols, name="learning_curve_fit"))
    if "sampling_variance" in summary:
        parts.append(
            "<p>Sampling variance: the spread of a trial's score over draws of training subjects "
            "of the same size (<code>train_sample</code>), next to the seed's.</p>"
        )
        sv_cols = [("dataset", "dataset"), ("model", "model"), ("train_fraction", "fraction"),
                   ("n_train", "subjects"), ("component", "component"), ("sd", "sd"),
                   ("ci_low", "var ci low"), ("ci_high", "var ci high")]  # fmt: skip
        parts.append(table(summary["sampling_variance"], sv_cols, name="sampling_variance"))
    return Section("learning-curves", "Learning curves", "".join(parts))
