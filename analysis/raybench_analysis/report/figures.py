"""The report's figures, drawn with matplotlib (Agg, no display, no network) from summary tables.

Each function takes the rows of one summary table for one dataset and returns a
:class:`matplotlib.figure.Figure` built without pyplot (no global state, safe in threads and
servers). :func:`render` turns a figure into SVG (inlined in the HTML, vector for papers) and PNG
(for slides) bytes. Colours follow a fixed model order across all figures of a report, and every
interval drawn is the one of the table, never recomputed.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before any backend is touched: the report never opens a window

import numpy as np
import polars as pl
from matplotlib.figure import Figure

__all__ = [
    "cd_diagram",
    "difference_plot",
    "forest_plot",
    "map_gallery",
    "model_colors",
    "reliability_diagram",
    "render",
    "risk_coverage_plot",
    "robustness_plot",
    "site_plot",
    "training_curves",
    "variance_plot",
]

#: Colour-blind-safe palette (Okabe & Ito 2008), cycled over models.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")

_RC = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.fonttype": "none",  # text stays text in the SVG: smaller, searchable, editable
    "svg.hashsalt": "raybench",  # stable ids: the same tables give the same SVG bytes
}


def model_colors(models: Sequence[str]) -> dict[str, str]:
    """A colour per model, in the given order (the same in every figure of one report)."""
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}


def render(fig: Figure, dpi: int = 200) -> tuple[bytes, bytes]:
    """``(svg, png)`` bytes of ``fig``; no date or creator in the SVG: reproducible."""
    with matplotlib.rc_context(_RC):
        svg, png = io.BytesIO(), io.BytesIO()
        fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
        fig.savefig(png, format="png", dpi=dpi, metadata={"Software": None})
    return svg.getvalue(), png.getvalue()


def _figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    with matplotlib.rc_context(_RC):
        return Figure(figsize=(width, height), layout=layout)


def _fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.3f}"


def _nan(values: Any) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def _errors(frame: pl.DataFrame) -> np.ndarray:
    """Asymmetric error bars (2, n) from ``estimate, ci_low, ci_high``; NaN where undefined."""
    est = _nan(frame["estimate"])
    low = np.clip(est - _nan(frame["ci_low"]), 0, None)
    high = np.clip(_nan(frame["ci_high"]) - est, 0, None)
    return np.vstack([np.nan_to_num(low), np.nan_to_num(high)])


def forest_plot(
    frame: pl.DataFrame, *, xlabel: str, colors: Mapping[str, str], title: str = ""
) -> Figure:
    """Each model's estimate with its interval, best at the top, the numbers written beside.

    ``frame``: rows of the ``models`` (or ``calibration``) table of one dataset.
    """
    rows = frame.sort("estimate", descending=False, nulls_last=False)
    n = rows.height
    with matplotlib.rc_context(_RC):
        fig = _figure(6.4, 0.42 * n + 1.0)
        ax = fig.add_subplot()
        y = np.arange(n)
        for i, row in enumerate(rows.iter_rows(named=True)):
            color = colors.get(row["model"], "#333333")
            ax.errorbar(
                row["estimate"],
                i,
                xerr=_errors(rows[i]),
                fmt="o",
                color=color,
                ecolor=color,
                capsize=3,
                markersize=5,
                lw=1.4,
            )
            text = f"{_fmt(row['estimate'])} [{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"
            ax.annotate(
                text,
                xy=(1.0, i),
                xycoords=("axes fraction", "data"),
                xytext=(6, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
        ax.set_yticks(y, rows["model"].to_list())
        ax.set_ylim(-0.6, n - 0.4)
        ax.set_xlabel(xlabel)
        ax.grid(axis="x", color="#dddddd", lw=0.6)
        if title:
            ax.set_title(title, loc="left")
    return fig


def difference_plot(frame: pl.DataFrame, *, xlabel: str, alpha: float, title: str = "") -> Figure:
    """Paired differences (a − b) with intervals per method; filled when adjusted p < alpha."""
    pairs = frame.select("model_a", "model_b").unique(maintain_order=True).rows()
    methods = frame["method"].unique(maintain_order=True).to_list()
    offsets = np.linspace(-0.18, 0.18, len(methods)) if len(methods) > 1 else np.zeros(1)
    markers = ("o", "s", "D", "^")
    with matplotlib.rc_context(_RC):
        fig = _figure(6.4, 0.5 * len(pairs) + 1.3)
        ax = fig.add_subplot()
        ax.axvline(0, color="#888888", lw=0.8, ls="--")
        for j, method in enumerate(methods):
            part = frame.filter(pl.col("method") == method)
            for i, (a, b) in enumerate(pairs):
                row = part.filter((pl.col("model_a") == a) & (pl.col("model_b") == b))
                if row.height == 0:
                    continue
                p = row["p_adjusted"][0] if "p_adjusted" in row.columns else row["p_value"][0]
                significant = p is not None and math.isfinite(p) and p < alpha
                color = PALETTE[j % len(PALETTE)]
                ax.errorbar(
                    row["estimate"][0],
                    len(pairs) - 1 - i + offsets[j],
                    xerr=_errors(row),
                    fmt=markers[j % len(markers)],
                    color=color,
                    mfc=color if significant else "white",
                    capsize=3,
                    markersize=5,
                    label=method.split("(")[0].strip() if i == 0 else None,
                )
        ax.set_yticks(np.arange(len(pairs))[::-1], [f"{a} − {b}" for a, b in pairs])
        ax.set_xlabel(xlabel)
        ax.grid(axis="x", color="#dddddd", lw=0.6)
        ax.legend(
            loc="lower left", bbox_to_anchor=(0, 1.0), ncol=len(methods), frameon=False, fontsize=8
        )
        if title:
            ax.set_title(title, loc="left")
    return fig


def cd_diagram(
    ranks: pl.DataFrame,
    critical_difference: float,
    cliques: Sequence[tuple[float, float]],
    *,
    title: str = "",
) -> Figure:
    """Demšar's (2006) critical-difference diagram: mean ranks, the CD bar and the cliques.

    ``ranks``: ``model, mean_rank`` (1 = best); ``cliques``: ``(rank_low, rank_high)`` of each
    group of models whose ranks differ by less than the critical difference.
    """
    rows = ranks.sort("mean_rank")
    k = rows.height
    lo, hi = 1.0, float(max(k, math.ceil(rows["mean_rank"].max() or 1)))
    half = math.ceil(k / 2)
    with matplotlib.rc_context(_RC):
        # no layout engine: the axes are only a drawing canvas, labels sit inside its limits
        fig = _figure(6.4, 1.3 + 0.28 * half + 0.12 * len(cliques), layout=None)
        ax = fig.add_axes((0.01, 0.01, 0.98, 0.86 if title else 0.98))
        ax.set_axis_off()
        ax.hlines(0, lo, hi, color="black", lw=1)
        for r in range(int(lo), int(hi) + 1):
            ax.vlines(r, 0, 0.08, color="black", lw=1)
            ax.text(r, 0.12, str(r), ha="center", va="bottom", fontsize=8)
        ax.hlines(0.55, lo, lo + critical_difference, color="black", lw=1.5)
        ax.vlines([lo, lo + critical_difference], 0.5, 0.6, color="black", lw=1.5)
        ax.text(
            lo + critical_difference / 2,
            0.62,
            f"CD = {critical_difference:.2f}",
            ha="center",
            va="bottom",
            fontsize=8,
        )
        for i, row in enumerate(rows.iter_rows(named=True)):
            r = float(row["mean_rank"])
            left = i < half
            depth = -0.35 - 0.28 * (i if left else k - 1 - i)
            end = lo - 0.15 if left else hi + 0.15
            ax.plot([r, r, end], [0, depth, depth], color="#333333", lw=0.9)
            ax.text(
                end + (-0.05 if left else 0.05),
                depth,
                f"{row['model']} ({r:.2f})",
                ha="right" if left else "left",
                va="center",
                fontsize=8,
            )
        for j, (a, b) in enumerate(cliques):
            y = -0.15 - 0.1 * j
            ax.hlines(y, a - 0.03, b + 0.03, color="#D55E00", lw=3)
        ax.set_xlim(lo - 0.25 * (hi - lo + 2), hi + 0.25 * (hi - lo + 2))
        ax.set_ylim(-0.5 - 0.28 * half, 0.9)
        if title:
            ax.set_title(title, loc="left")
    return fig


def site_plot(frame: pl.DataFrame, *, xlabel: str, colors: Mapping[str, str]) -> Figure:
    """Per-site estimates with intervals, one row per site, models side by side."""
    sites = sorted(frame["site"].unique().to_list())
    models = [m for m in colors if m in set(frame["model"].to_list())]
    offsets = np.linspace(-0.25, 0.25, len(models)) if len(models) > 1 else np.zeros(1)
    with matplotlib.rc_context(_RC):
        fig = _figure(6.4, 0.38 * len(sites) * max(1, len(models) / 2) + 1.3)
        ax = fig.add_subplot()
        for j, model in enumerate(models):
            part = frame.filter(pl.col("model") == model)
            index = {s: len(sites) - 1 - i for i, s in enumerate(sites)}
            y = np.array([index[s] for s in part["site"].to_list()], dtype=float) + offsets[j]
            ax.errorbar(
                part["estimate"].to_numpy(),
                y,
                xerr=_errors(part),
                fmt="o",
                color=colors[model],
                capsize=2,
                markersize=4,
                label=model,
            )
        ax.set_yticks(np.arange(len(sites))[::-1], sites)
        ax.set_xlabel(xlabel)
        ax.grid(axis="x", color="#dddddd", lw=0.6)
        ax.legend(
            loc="lower left",
            bbox_to_anchor=(0, 1.0),
            ncol=min(len(models), 5),
            frameon=False,
            fontsize=8,
        )
    return fig


_COMPONENT_COLORS = {
    "seed": "#56B4E9",
    "split": "#E69F00",
    "test_sample": "#009E73",
    "total": "#555555",
}


def variance_plot(frame: pl.DataFrame) -> Figure:
    """Standard deviation of a trial's score due to each component, grouped bars per model.

    SDs rather than shares: the parts are estimated separately (the test-sample part from the
    within-fold resampling), so their shares need not add up to one on a small run.
    """
    models = frame["model"].unique(maintain_order=True).to_list()
    components = frame["component"].unique(maintain_order=True).to_list()
    height = 0.8 / max(len(components), 1)
    with matplotlib.rc_context(_RC):
        fig = _figure(6.4, (0.3 + 0.18 * len(components)) * len(models) + 1.2)
        ax = fig.add_subplot()
        base = np.arange(len(models))[::-1].astype(float)
        for j, c in enumerate(components):
            rows = {r["model"]: r for r in frame.filter(pl.col("component") == c).to_dicts()}
            sd = _nan((rows.get(m) or {}).get("sd") for m in models)
            y = base + 0.4 - height * (j + 0.5)
            ax.barh(
                y,
                np.nan_to_num(sd),
                height=height * 0.9,
                color=_COMPONENT_COLORS.get(c, "#999999"),
                label=c.replace("_", " "),
            )
        ax.set_yticks(base, models)
        ax.set_xlabel("standard deviation of a trial's score")
        ax.grid(axis="x", color="#dddddd", lw=0.6)
        ax.legend(
            loc="lower left",
            bbox_to_anchor=(0, 1.0),
            ncol=len(components),
            frameon=False,
            fontsize=8,
        )
    return fig


def reliability_diagram(frame: pl.DataFrame, *, colors: Mapping[str, str]) -> Figure:
    """Observed frequency against mean predicted probability per bin, bin counts underneath."""
    models = [m for m in colors if m in set(frame["model"].to_list())]
    ncol = min(len(models), 3)
    nrow = math.ceil(len(models) / ncol)
    with matplotlib.rc_context(_RC):
        fig = _figure(2.4 * ncol + 0.4, 3.0 * nrow)
        grid = fig.add_gridspec(2 * nrow, ncol, height_ratios=[3, 1] * nrow)
        for i, model in enumerate(models):
            r, c = divmod(i, ncol)
            top = fig.add_subplot(grid[2 * r, c])
            bottom = fig.add_subplot(grid[2 * r + 1, c], sharex=top)
            part = frame.filter(pl.col("model") == model).sort("bin_low")
            top.plot([0, 1], [0, 1], color="#888888", lw=0.8, ls="--")
            filled = part.filter(pl.col("n") > 0)
            top.plot(filled["mean_conf"], filled["frac"], "o-", color=colors[model], ms=4)
            top.set_title(model, loc="left")
            top.set_ylim(0, 1)
            top.set_ylabel("observed frequency" if c == 0 else "")
            top.tick_params(labelbottom=False)
            width = (part["bin_high"] - part["bin_low"]).to_numpy()
            bottom.bar(
                part["bin_low"].to_numpy(),
                part["n"].to_numpy(),
                width=width * 0.9,
                align="edge",
                color=colors[model],
                alpha=0.6,
            )
            for x, w, n in zip(part["bin_low"], width, part["n"], strict=True):
                if n:
                    bottom.text(x + w / 2, n, str(n), ha="center", va="bottom", fontsize=6)
            bottom.set_xlim(0, 1)
            bottom.set_ylim(0, max(1, int(part["n"].max() or 1)) * 1.35)
            bottom.set_xlabel("mean predicted probability")
            bottom.set_ylabel("n" if c == 0 else "")
    return fig


def robustness_plot(frame: pl.DataFrame, *, ylabel: str, colors: Mapping[str, str]) -> Figure:
    """Metric change against severity per perturbation type, each point with its interval.

    The clean score is the origin (severity 0, change 0); perturbations without a severity are
    placed at equal steps in the order of the table.
    """
    types = frame["perturbation_type"].unique(maintain_order=True).to_list()
    ncol = min(len(types), 3)
    nrow = math.ceil(len(types) / ncol)
    with matplotlib.rc_context(_RC):
        fig = _figure(3.2 * ncol + 0.4, 2.8 * nrow)
        for i, ptype in enumerate(types):
            ax = fig.add_subplot(nrow, ncol, i + 1)
            part = frame.filter(pl.col("perturbation_type") == ptype)
            ax.axhline(0, color="#888888", lw=0.8, ls="--")
            models = [m for m in colors if m in set(part["model"].to_list())]
            for j, model in enumerate(models):
                rows = part.filter(pl.col("model") == model)
                sev = rows["severity"].to_list()
                if any(s is None for s in sev):
                    sev = list(range(1, rows.height + 1))
                rows = rows.with_columns(_x=pl.Series(sev, dtype=pl.Float64)).sort("_x")
                # models side by side at each severity, so that their intervals do not overlap
                dodge = (j - (len(models) - 1) / 2) * 0.015 * max(max(sev), 1e-12)
                x = np.concatenate([[0.0], rows["_x"].to_numpy() + dodge])
                y = np.concatenate([[0.0], rows["estimate"].to_numpy()])
                err = np.hstack([np.zeros((2, 1)), _errors(rows)])
                ax.errorbar(
                    x, y, yerr=err, fmt="o-", color=colors[model], capsize=3, ms=4, label=model
                )
            ax.set_title(str(ptype), loc="left")
            ax.set_xlabel("severity")
            ax.set_ylabel(ylabel if i % ncol == 0 else "")
            ax.grid(color="#eeeeee", lw=0.6)
            if i == 0:
                ax.legend(frameon=False, fontsize=7)
    return fig


def training_curves(frame: pl.DataFrame, *, colors: Mapping[str, str]) -> Figure:
    """Median and interquartile band over trials, per model and epoch, of each curve.

    ``frame``: ``model, curve, epoch, median, q25, q75, n`` (one row per model, curve and epoch),
    as aggregated from the ``epochs`` table.
    """
    curves = frame["curve"].unique(maintain_order=True).to_list()
    with matplotlib.rc_context(_RC):
        fig = _figure(3.0 * len(curves) + 0.4, 2.8)
        for i, curve in enumerate(curves):
            ax = fig.add_subplot(1, len(curves), i + 1)
            part = frame.filter(pl.col("curve") == curve)
            for model in [m for m in colors if m in set(part["model"].to_list())]:
                rows = part.filter(pl.col("model") == model).sort("epoch")
                x = rows["epoch"].to_numpy()
                ax.plot(x, rows["median"].to_numpy(), "-", color=colors[model], lw=1.5, label=model)
                ax.fill_between(
                    x,
                    rows["q25"].to_numpy(),
                    rows["q75"].to_numpy(),
                    color=colors[model],
                    alpha=0.2,
                    lw=0,
                )
            ax.set_title(curve, loc="left")
            ax.set_xlabel("epoch")
            ax.grid(color="#eeeeee", lw=0.6)
            if i == 0:
                ax.legend(frameon=False, fontsize=7)
    return fig


def risk_coverage_plot(frame: pl.DataFrame) -> Figure:
    """Selective risk against coverage for one model: a line per variant and uncertainty score.

    ``frame``: rows of :func:`raybench_analysis.risk_coverage` for one model (``variant``,
    ``uncertainty``, ``coverage``, ``risk``); the variants share a colour, the scores a line style.
    """
    variants = frame["variant"].unique(maintain_order=True).to_list()
    scores = frame["uncertainty"].unique(maintain_order=True).to_list()
    styles = ("-", "--", ":", "-.")
    with matplotlib.rc_context(_RC):
        fig = _figure(4.6, 3.0)
        ax = fig.add_subplot()
        for i, variant in enumerate(variants):
            for j, score in enumerate(scores):
                rows = frame.filter(
                    (pl.col("variant") == variant) & (pl.col("uncertainty") == score)
                ).sort("coverage")
                if rows.height == 0:
                    continue
                ax.plot(
                    rows["coverage"].to_numpy(),
                    rows["risk"].to_numpy(),
                    styles[j % len(styles)],
                    color=PALETTE[i % len(PALETTE)],
                    lw=1.4,
                    label=f"{variant}, {score}",
                )
        ax.set_xlabel("coverage (fraction of images kept)")
        ax.set_ylabel("selective risk (error rate)")
        ax.set_xlim(0, 1)
        ax.grid(color="#eeeeee", lw=0.6)
        ax.legend(frameon=False, fontsize=7)
    return fig


def map_gallery(slices: Mapping[str, np.ndarray], methods: Sequence[str]) -> Figure:
    """Attribution maps over the image: a row per method, the three orthogonal slices.

    ``slices``: the arrays of one kept sample's NPZ file (``image_<a>``, ``mask_<a>``,
    ``map_<method>_<a>`` for ``a`` in x, y, z; the ``explanations`` table's ``slices_path``).
    The image is grey; the positive part of the map, scaled to its maximum over the three
    slices, is drawn over it in a warm colour map; the ground-truth mask is outlined in cyan.
    """
    axes_names = ("x", "y", "z")
    with matplotlib.rc_context(_RC):
        fig = _figure(1.5 * len(axes_names) + 0.4, 1.5 * len(methods) + 0.3)
        grid = fig.subplots(len(methods), len(axes_names), squeeze=False)
        for i, method in enumerate(methods):
            maps = [np.clip(slices[f"map_{method}_{a}"], 0, None) for a in axes_names]
            top = max(float(m.max()) for m in maps) or 1.0
            for j, a in enumerate(axes_names):
                ax = grid[i][j]
                ax.imshow(slices[f"image_{a}"].T, cmap="gray", origin="lower")
                shown = np.ma.masked_less_equal(maps[j] / top, 0.05)
                ax.imshow(shown.T, cmap="inferno", origin="lower", alpha=0.7, vmin=0, vmax=1)
                if f"mask_{a}" in slices and slices[f"mask_{a}"].any():
                    ax.contour(slices[f"mask_{a}"].T, levels=[0.5], colors="cyan",
                               linewidths=0.8, origin="lower")  # fmt: skip
                ax.set_xticks([])
                ax.set_yticks([])
                if j == 0:
                    ax.set_ylabel(method, fontsize=8)
                if i == 0:
                    ax.set_title(f"slice normal to {a}", fontsize=8)
    return fig
