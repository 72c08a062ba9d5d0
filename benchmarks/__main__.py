"""Run every benchmark script (``benchmarks/*.py``) and print their JSON, one object per line.

``make bench`` calls ``python -m benchmarks``. Each script runs in its own process (a fresh Ray,
a clean memory measurement); a script that fails prints ``{"benchmark": name, "error": ...}``
and the exit code is 1. ``python -m benchmarks NAME ...`` runs only the named scripts; those of
:data:`ON_REQUEST` (``gpu_check``) run only when named.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


#: Scripts that run only when named: they need hardware CI does not have (gpu_check: a GPU).
ON_REQUEST = frozenset({"gpu_check"})


def scripts(names: list[str]) -> list[Path]:
    found = sorted(p for p in HERE.glob("*.py") if not p.name.startswith("_"))
    if not names:
        return [p for p in found if p.stem not in ON_REQUEST]
    return [p for p in found if p.stem in names]


def main() -> int:
    status = 0
    for path in scripts(sys.argv[1:]):
        proc = subprocess.run(
            [sys.executable, "-m", f"benchmarks.{path.stem}"],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.lstrip().startswith("{")]
        if proc.returncode != 0 or not lines:
            status = 1
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            print(json.dumps({"benchmark": path.stem, "error": " | ".join(tail)}), flush=True)
            continue
        for line in lines:
            print(line, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
