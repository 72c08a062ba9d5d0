"""raybench: trustworthy, reproducible benchmarks of deep-learning models on medical images."""

__version__ = "0.1.0"
