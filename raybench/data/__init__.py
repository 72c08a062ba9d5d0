"""Data sources (synthetic, manifest, BIDS), validated into :class:`~raybench.data.cohort.Cohort`."""
