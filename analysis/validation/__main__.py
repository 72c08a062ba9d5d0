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
    """Run the coverage and type-I error studies; print their reports as one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few replicates (a smoke run)")
    args = parser.parse_args()
    flags = ["--quick"] if args.quick else []
    reports = {}
    for name, module in (("coverage", coverage), ("type1_error", type1_error)):
        with contextlib.redirect_stdout(io.StringIO()):
            reports[name] = module.main(flags)
    print(json.dumps(reports, indent=2))


if __name__ == "__main__":
    main()
