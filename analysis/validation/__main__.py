"""Run every simulation study and print one JSON object: ``python -m analysis.validation``.

``--quick`` runs a few replicates of each (a smoke run of a minute or two); without it the studies
use the replicate counts reported in docs/statistics.md (tens of minutes on one core).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json

from analysis.validation import coverage, type1_error


def main() -> None:
    """Run the coverage and type-I error (AUC, accuracy, Dice) studies; print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few replicates (a smoke run)")
    args = parser.parse_args()
    flags = ["--quick"] if args.quick else []
    reports = {}
    studies = (
        ("coverage", coverage, []),  # the reported estimand: per (fold, seed), averaged
        ("coverage_pooled", coverage, ["--estimand", "pooled"]),
        ("type1_error", type1_error, []),  # AUC
        ("type1_error_accuracy", type1_error, ["--metric", "accuracy"]),
        ("type1_error_dice", type1_error, ["--metric", "dice", "--default-only"]),
    )
    for name, module, extra in studies:
        with contextlib.redirect_stdout(io.StringIO()):
            reports[name] = module.main([*flags, *extra])
    print(json.dumps(reports, indent=2))


if __name__ == "__main__":
    main()
