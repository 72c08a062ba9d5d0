"""The ``raybench`` command line: one module per command group, wired in ``raybench.cli.main``."""
