"""Run every simulation study and print one JSON object: ``python -m analysis.validation``.

``--quick`` runs a few replicates of each (a smoke run of a minute or two); without it the studies
use the replicate counts reported in docs/statistics.md (tens of minutes on one core).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json

from analysis.validation import coverage, external_gap, type1_error


def main() -> None:
    """Run the coverage, type-I error (AUC, accuracy) and generalisation-gap studies; print one
    JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few replicates (a smoke run)")
    args = parser.parse_args()
    flags = ["--quick"] if args.quick else []
    reports = {}
    studies = (
        ("coverage", coverage, []),
        ("type1_error", type1_error, []),  # AUC
        ("type1_error_accuracy", type1_error, ["--metric", "accuracy"]),
        ("external_gap", external_gap, []),
    )
    for name, module, extra in studies:
        with contextlib.redirect_stdout(io.StringIO()):
            reports[name] = module.main([*flags, *extra])
    print(json.dumps(reports, indent=2))


if __name__ == "__main__":
    main()
