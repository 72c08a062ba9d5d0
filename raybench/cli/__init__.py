"""The ``raybench`` command line: one module per command group, wired in :mod:`raybench.cli.main`."""
