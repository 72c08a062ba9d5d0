"""The compiler: suite + cohorts -> a plan of stages of content-addressed trials."""
