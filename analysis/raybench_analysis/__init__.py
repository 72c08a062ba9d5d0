"""raybench_analysis: hierarchical inferential statistics over raybench results."""

# A3: Friedman/Nemenyi, ranking stability, robustness, simulation, summary
from raybench_analysis.formula import FormulaError, parse_formula
from raybench_analysis.friedman import FriedmanResult, friedman
from raybench_analysis.mixed import MixedResult, mixed
from raybench_analysis.ranking import ranking_stability
from raybench_analysis.robustness import robustness
from raybench_analysis.simulate import SimulatedRun, simulate_predictions, write_results_dir
from raybench_analysis.summarize import Summary, read_results, summarize

__all__ = [
    "FormulaError",
    "FriedmanResult",
    "MixedResult",
    "SimulatedRun",
    "Summary",
    "friedman",
    "mixed",
    "parse_formula",
    "ranking_stability",
    "read_results",
    "robustness",
    "simulate_predictions",
    "summarize",
    "write_results_dir",
]
