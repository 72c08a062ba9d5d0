"""raybench_analysis: hierarchical inferential statistics over raybench results."""
