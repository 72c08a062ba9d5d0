"""The self-contained HTML report of a results directory, and its figures.

``write_report(results_dir)`` renders the tables of :func:`raybench_analysis.summarize` and the
provenance of the run into one HTML file that loads nothing from another host (figures inlined as
SVG, styles inline), and writes each figure as PNG and SVG beside it. It needs matplotlib: install
the analysis package with its ``report`` extra (``pip install "raybench-analysis[report]"``).
"""

from raybench_analysis.report.build import Report, write_report
from raybench_analysis.report.methods import METHODS, REFERENCES, methods_paragraphs

__all__ = ["METHODS", "REFERENCES", "Report", "methods_paragraphs", "write_report"]
