"""The methods paragraph of the report and its citations: one source with docs/statistics.md.

:data:`REFERENCES` holds each full citation exactly as docs/statistics.md lists it (a test checks
that every entry appears there verbatim, italics aside), and :data:`METHODS` one sentence per
statistic of :func:`raybench_analysis.summarize`, naming its estimand and the references it rests
on. :func:`methods_paragraphs` keeps the paragraphs of the tables a summary actually holds, with
the run's settings filled in, so the report never cites a method it did not use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["METHODS", "REFERENCES", "MethodText", "methods_paragraphs", "references_for"]

#: Citation key -> full reference (as in docs/statistics.md, without Markdown italics).
REFERENCES: dict[str, str] = {
    "airola2011": (
        "Airola, A., Pahikkala, T., Waegeman, W., De Baets, B., & Salakoski, T. (2011). An "
        "experimental comparison of cross-validation techniques for estimating the area under the "
        "ROC curve. Computational Statistics & Data Analysis, 55(4), 1828–1844."
    ),
    "bates2023": (
        "Bates, S., Hastie, T., & Tibshirani, R. (2023). Cross-validation: what does it estimate "
        "and how well does it do it? Journal of the American Statistical Association, 119(546), "
        "1434–1445."
    ),
    "boone2023": (
        "Boone, L., et al. (2023). ROOD-MRI: Benchmarking the robustness of deep learning "
        "segmentation models to out-of-distribution and corrupted data in MRI. NeuroImage, 278, "
        "120289."
    ),
    "bouckaert2004": (
        "Bouckaert, R. R., & Frank, E. (2004). Evaluating the replicability of significance tests "
        "for comparing learning algorithms. PAKDD 2004, LNCS 3056, 3–12."
    ),
    "bouthillier2021": (
        "Bouthillier, X., et al. (2021). Accounting for variance in machine learning benchmarks. "
        "Proceedings of Machine Learning and Systems, 3."
    ),
    "cameron2008": (
        "Cameron, A. C., Gelbach, J. B., & Miller, D. L. (2008). Bootstrap-based improvements for "
        "inference with clustered errors. Review of Economics and Statistics, 90(3), 414–427."
    ),
    "davison1997": (
        "Davison, A. C., & Hinkley, D. V. (1997). Bootstrap Methods and their Application. "
        "Cambridge University Press."
    ),
    "demsar2006": (
        "Demšar, J. (2006). Statistical comparisons of classifiers over multiple data sets. "
        "Journal of Machine Learning Research, 7, 1–30."
    ),
    "efron1993": (
        "Efron, B., & Tibshirani, R. J. (1993). An Introduction to the Bootstrap. Chapman & Hall."
    ),
    "field2007": (
        "Field, C. A., & Welsh, A. H. (2007). Bootstrapping clustered data. Journal of the Royal "
        "Statistical Society B, 69(3), 369–390."
    ),
    "forman2010": (
        "Forman, G., & Scholz, M. (2010). Apples-to-apples in cross-validation studies: pitfalls "
        "in classifier performance measurement. ACM SIGKDD Explorations, 12(1), 49–57."
    ),
    "guo2017": (
        "Guo, C., Pleiss, G., Sun, Y., & Weinberger, K. Q. (2017). On calibration of modern neural "
        "networks. ICML 2017, PMLR 70, 1321–1330."
    ),
    "hendrycks2019": (
        "Hendrycks, D., & Dietterich, T. (2019). Benchmarking neural network robustness to common "
        "corruptions and perturbations. ICLR 2019."
    ),
    "iman1980": (
        "Iman, R. L., & Davenport, J. M. (1980). Approximations of the critical region of the "
        "Friedman statistic. Communications in Statistics – Theory and Methods, 9(6), 571–595."
    ),
    "maierhein2018": (
        "Maier-Hein, L., et al. (2018). Why rankings of biomedical image analysis competitions "
        "should be interpreted with care. Nature Communications, 9, 5217."
    ),
    "maurer1995": (
        "Maurer, W., Hothorn, L. A., & Lehmacher, W. (1995). Multiple comparisons in drug clinical "
        "trials and preclinical assays: a-priori ordered hypotheses. In J. Vollmar (Ed.), "
        "Biometrie in der chemisch-pharmazeutischen Industrie 6 (pp. 3–18). Gustav Fischer."
    ),
    "nadeau2003": (
        "Nadeau, C., & Bengio, Y. (2003). Inference for the generalization error. Machine "
        "Learning, 52(3), 239–281."
    ),
    "satterthwaite1946": (
        "Satterthwaite, F. E. (1946). An approximate distribution of estimates of variance "
        "components. Biometrics Bulletin, 2(6), 110–114."
    ),
    "varoquaux2023": (
        "Varoquaux, G., & Colliot, O. (2023). Evaluating machine learning models and their "
        "diagnostic value. In Machine Learning for Brain Disorders (pp. 601–630). Springer."
    ),
    "westfall2001": (
        "Westfall, P. H., & Krishen, A. (2001). Optimally weighted, fixed sequence and gatekeeper "
        "multiple testing procedures. Journal of Statistical Planning and Inference, 99(1), 25–40."
    ),
    "wiesenfarth2021": (
        "Wiesenfarth, M., et al. (2021). Methods and open-source toolkit for analyzing and "
        "visualizing challenge results. Scientific Reports, 11, 2369."
    ),
}


@dataclass(frozen=True)
class MethodText:
    """One statistic of the summary: the table it fills, a sentence template and its sources.

    ``text`` is a :meth:`str.format` template over the summary's settings (``metric``,
    ``hierarchy``, ``alpha``, ``confidence``, ``n_boot``, ``correction``, ``scheme``,
    ``interval``); ``cites`` are keys of :data:`REFERENCES`.
    """

    table: str
    title: str
    text: str
    cites: tuple[str, ...]


#: One entry per table of :func:`raybench_analysis.summarize`, in report order.
METHODS: tuple[MethodText, ...] = (
    MethodText(
        "models",
        "Performance with hierarchical intervals",
        "Each model's {metric} is computed on every (outer fold, seed) test set, averaged over "
        "seeds within a fold, then over folds, so that it estimates the performance of the "
        "trained models of this run on new patients (Bates, Hastie & Tibshirani 2023; Varoquaux "
        "& Colliot 2023); pooling predictions across folds would bias AUC (Forman & Scholz 2010; "
        "Airola et al. 2011). Its {confidence} interval comes from a {scheme} bootstrap over "
        "{hierarchy} with {n_boot} replicates, keeping everything below a drawn unit whole "
        "(Davison & Hinkley 1997; Field & Welsh 2007), and the few-cluster {interval} interval "
        "(Cameron, Gelbach & Miller 2008).",
        (
            "bates2023",
            "varoquaux2023",
            "forman2010",
            "airola2011",
            "davison1997",
            "field2007",
            "cameron2008",
        ),
    ),
    MethodText(
        "comparisons",
        "Paired model comparisons",
        "Pairs of models are compared on the same test subjects: a paired {scheme} bootstrap of "
        "the difference (these trained models on new patients) and the corrected resampled "
        "t-test on per-fold differences, seeds averaged within the fold (the training "
        "procedures; Nadeau & Bengio 2003; Bouckaert & Frank 2004). Seeds are never treated as "
        "independent replicates. p-values are adjusted over the pairs with the {correction} "
        "method at level {alpha}.",
        ("nadeau2003", "bouckaert2004"),
    ),
    MethodText(
        "combined",
        "Comparisons across results directories",
        "Several results directories are analysed as one, each model keeping the label of its "
        "directory. Two models tested on the same samples in the same folds are compared as "
        "above; on the same samples in other folds, by a paired {scheme} bootstrap over "
        "{hierarchy} of the difference of their own estimates (metric per own fold and seed, "
        "averaged), without the t-test, which needs shared folds. When their test subjects "
        "differ, paired comparison is refused: each model is bootstrapped on its own sites and "
        "subjects, independently, and the difference gets the variance of both and "
        "Welch–Satterthwaite degrees of freedom (Efron & Tibshirani 1993, ch. 8; Davison & "
        "Hinkley 1997; Satterthwaite 1946); it then includes any difference between the two "
        "test populations.",
        ("efron1993", "davison1997", "satterthwaite1946"),
    ),
    MethodText(
        "ranking",
        "Ranking stability",
        "Ranks are recomputed on {n_boot} bootstrap samples of {hierarchy}, all models re-scored "
        "on the same sample, giving each model's probability of each rank (Wiesenfarth et al. "
        "2021; Maier-Hein et al. 2018).",
        ("wiesenfarth2021", "maierhein2018"),
    ),
    MethodText(
        "friedman",
        "Across datasets",
        "Across datasets, models are ranked within each dataset; the Friedman test with the "
        "Iman–Davenport correction tests whether mean ranks differ, and the Nemenyi critical "
        "difference at level {alpha} draws the critical-difference diagram (Demšar 2006; Iman & "
        "Davenport 1980).",
        ("demsar2006", "iman1980"),
    ),
    MethodText(
        "variance",
        "Variance components",
        "The spread of a trial's score is split into seed, data-split and test-sample parts "
        "(Bouthillier et al. 2021); these parts speak of the training procedure and size future "
        "studies (how many seeds, splits and subjects).",
        ("bouthillier2021",),
    ),
    MethodText(
        "calibration",
        "Calibration",
        "Calibration is the expected calibration error (10 equal-width bins, the convention named "
        "in the table; Guo et al. 2017) of each (fold, seed) test set, averaged like the "
        "performance metric, with the same hierarchical interval; reliability diagrams plot the "
        "observed frequency of the positive class against the mean predicted probability per "
        "bin, seeds and folds pooled.",
        ("guo2017",),
    ),
    MethodText(
        "robustness",
        "Robustness",
        "Under each input perturbation, the change of {metric} is measured on the same images of "
        "the same trained models as the clean score, with a paired {scheme} bootstrap over "
        "{hierarchy} and its {confidence} interval (Hendrycks & Dietterich 2019; Boone et al. "
        "2023).",
        ("hendrycks2019", "boone2023"),
    ),
    MethodText(
        "operating_ranges",
        "Operating ranges",
        "The operating range of a model for a perturbation type is the largest severity up to "
        "which the one-sided bound of the paired change of {metric} stays within the tolerance of "
        "its clean value; severities are tested in order from the least severe, stopping at the "
        "first failure, which controls the family-wise error rate at {alpha} without adjustment "
        "(Maurer, Hothorn & Lehmacher 1995; Westfall & Krishen 2001).",
        ("maurer1995", "westfall2001"),
    ),
)


def _fill(template: str, settings: Mapping[str, Any]) -> str:
    alpha = float(settings.get("alpha", 0.05))
    hierarchy = list(settings.get("hierarchy") or [])
    values = {
        "metric": settings.get("metric", "the metric"),
        "hierarchy": " then ".join(hierarchy) if hierarchy else "images (no hierarchy)",
        "alpha": f"{alpha:g}",
        "confidence": f"{100 * (1 - alpha):g}%",
        "n_boot": settings.get("n_boot", "the"),
        "correction": settings.get("correction", "holm"),
        "scheme": settings.get("scheme", "cluster"),
        "interval": settings.get("interval", "t"),
    }
    return template.format(**values)


def methods_paragraphs(tables: Iterable[str], settings: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(title, paragraph)`` for each statistic whose table is in ``tables``, settings filled in.

    Examples
    --------
    >>> paras = methods_paragraphs(["models"], {"metric": "auc", "hierarchy": ["site"]})
    >>> paras[0][0], "bootstrap over site" in paras[0][1]
    ('Performance with hierarchical intervals', True)
    """
    present = set(tables)
    return [(m.title, _fill(m.text, settings)) for m in METHODS if m.table in present]


def references_for(tables: Iterable[str]) -> list[str]:
    """The full citations of the statistics whose tables are in ``tables``, alphabetical.

    Examples
    --------
    >>> references_for(["friedman"])[0].startswith("Demšar, J. (2006)")
    True
    """
    present = set(tables)
    keys = {k for m in METHODS if m.table in present for k in m.cites}
    return sorted(REFERENCES[k] for k in keys)
