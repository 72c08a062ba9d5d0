"""The analysis package imports and works with Ray, torch, MONAI (and raybench) unimportable."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import sys

    BLOCKED = ("ray", "torch", "monai", "raybench")

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked for this test)")
            return None

    sys.meta_path.insert(0, Block())
    for name in list(sys.modules):
        if name.split(".")[0] in BLOCKED:
            del sys.modules[name]

    import numpy as np
    import polars as pl
    import raybench_analysis as ra

    rng = np.random.default_rng(0)
    n = 200
    frame = pl.DataFrame({
        "site": [f"s{i % 4}" for i in range(n)],
        "subject_id": [f"p{i % 50}" for i in range(n)],
        "y_true": (np.arange(n) % 2).astype(float),
        "score": rng.random(n),
    })
    out = ra.bootstrap(frame, metric="auc", levels=["site", "subject_id"], n_boot=100)
    assert out["n_boot"][0] > 0, out
    loaded = [m for m in sys.modules if m.split(".")[0] in BLOCKED]
    assert not loaded, loaded
    assert issubclass(ra.AnalysisError, ValueError)
    print("ok", out["unit"][0])
    """
)


def test_import_without_ray_torch_monai():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok site>subject_id"
