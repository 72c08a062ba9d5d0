"""Trial ids of the shipped suites are pinned: a refactor of the config must not change them.

Ids are content hashes of the trial config; results directories written by earlier versions are
resumed by id, so a change here orphans every existing result. The values were computed before the
typed trial config replaced the dict-building compiler; change them only with ``ID_VERSION``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from raybench.cli.main import app

ROOT = Path(__file__).resolve().parents[2]

#: suite -> (number of trials, sha256 of the sorted ids (16 hex), first two ids, last id)
PINNED = {
    "leave_one_site_out": (60, "f790b0ee18fd5866", ["138142b94f4dd428", "dcf103fc855ecc7b"],
                           "f213fe8fa83e81bb"),
    "nested_cv": (600, "4688e4c1d48f7bf5", ["4d30631847d22c96", "777233dc08533e54"],
                  "b7c0f0c53ceee756"),
    "quickstart": (12, "b90f9fd32465eba5", ["5d3edcbc7d3e4180", "10a968cb2f36222d"],
                   "a644962badf79033"),
    "regression": (32, "49ff0154b9651f7c", ["54e9012eb4b10bdb", "20b6fac26e1a1160"],
                   "9c6de38fd4766a37"),
    "segmentation": (12, "2614928350702c59", ["526eda4235f10531", "1ec1a5a431ae7cf0"],
                     "83efead94c2b1e0b"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(PINNED))
def test_shipped_suite_trial_ids_do_not_change(name: str, tmp_path: Path) -> None:
    suite = ROOT / "suites" / f"{name}.yaml"
    result = CliRunner().invoke(
        app, ["plan", str(suite), "--json", "--data-root", str(tmp_path / "data")]
    )
    assert result.exit_code == 0, result.output
    ids = [json.loads(line)["trial_id"] for line in result.stdout.splitlines()]
    digest = hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]
    n, pinned_digest, first, last = PINNED[name]
    assert (len(ids), ids[:2], ids[-1]) == (n, first, last)
    assert digest == pinned_digest
