"""Stable content hashes: canonical JSON -> sha256.

A trial id is the hash of everything that determines the trial's result and of nothing else, so
that the same suite gives the same ids on any machine, a resumed run recognises finished trials,
and a change that alters results (a learning rate, a seed, a moved sample, new data) gives new ids.

What goes in (see :func:`trial_id`): the *result config* (the trial config without the keys listed
in :data:`NON_RESULT_KEYS`), the data fingerprint, the sorted sample ids of each role (train, val,
test), the seed, the stage and, for a refit that selects among candidates, the ids of the search
trials it depends on. What stays out: the suite name and description, the trial's position in the
plan (dataset/model/protocol names, fold numbers), resources, tracking, DataLoader workers and the
list of reported metrics (metrics are computed from stored predictions by the analysis).

Hashes of big parts (a fold's membership, a config) are computed once and combined, which keeps
compiling 100,000 trials to seconds; the result is still a pure function of the content.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "ID_LENGTH",
    "ID_VERSION",
    "NON_RESULT_KEYS",
    "canonical_json",
    "config_digest",
    "content_hash",
    "ids_digest",
    "result_config",
    "trial_id",
]

#: Bumped when the hashed payload changes meaning (old results then no longer match).
ID_VERSION = 1

#: Hex characters of a trial id (64 bits: collision-free for any realistic plan).
ID_LENGTH = 16

#: Config keys (dotted paths) that do not change a trial's result and are left out of its id.
NON_RESULT_KEYS: tuple[str, ...] = (
    "suite",
    "wandb",
    "resources",
    "training.num_workers",
    "evaluation.metrics",
)


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys, no whitespace, no NaN: one text for one value, on any machine.

    >>> canonical_json({"b": [1, 2.5], "a": None})
    '{"a":null,"b":[1,2.5]}'
    """
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def content_hash(obj: Any, length: int = 64) -> str:
    """sha256 hex digest of :func:`canonical_json` of ``obj``, truncated to ``length`` chars.

    >>> content_hash({"a": 1}) == content_hash({"a": 1.0}) or "ints and floats differ"
    'ints and floats differ'
    >>> len(content_hash([1, 2], 16))
    16
    """
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()[:length]


def ids_digest(ids: Sequence[str]) -> str:
    """Digest of a set of sample ids (order does not matter).

    >>> ids_digest(["b", "a"]) == ids_digest(("a", "b"))
    True
    """
    return content_hash(sorted(ids))


def result_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` without the keys of :data:`NON_RESULT_KEYS` (a shallow copy of what changes)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key in NON_RESULT_KEYS:
            continue
        if isinstance(value, Mapping):
            drop = {p.split(".", 1)[1] for p in NON_RESULT_KEYS if p.startswith(key + ".")}
            if drop:
                value = {k: v for k, v in value.items() if k not in drop}
        out[key] = value
    return out


def config_digest(config: Mapping[str, Any]) -> str:
    """Hash of the result-determining part of a trial config (the ``config_hash`` of results)."""
    return content_hash(result_config(config))


def trial_id(
    *,
    stage: str,
    config_hash: str,
    data_fingerprint: str,
    train: str,
    val: str,
    test: str,
    seed: int,
    depends_on: Sequence[str] = (),
) -> str:
    """The id of one trial from the digests of its parts.

    ``config_hash`` is :func:`config_digest` of the trial config; ``train``/``val``/``test`` are
    :func:`ids_digest` of each role's sample ids; ``depends_on`` the ids of the search trials a
    refit chooses from (order does not matter).

    >>> a = trial_id(stage="refit", config_hash="c", data_fingerprint="d", train="t", val="v",
    ...              test="x", seed=0)
    >>> a == trial_id(stage="refit", config_hash="c", data_fingerprint="d", train="t", val="v",
    ...               test="x", seed=1)
    False
    """
    # canonical_json of {"config", "data", "depends_on", "seed", "stage", "test", "train", "v",
    # "val"} written out directly (keys in sorted order): the same text, several times faster
    deps = ",".join(_js(d) for d in sorted(depends_on))
    text = (
        f'{{"config":{_js(config_hash)},"data":{_js(data_fingerprint)},"depends_on":[{deps}],'
        f'"seed":{int(seed)},"stage":{_js(stage)},"test":{_js(test)},"train":{_js(train)},'
        f'"v":{ID_VERSION},"val":{_js(val)}}}'
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:ID_LENGTH]


def _js(text: str) -> str:
    """JSON string literal of ``text`` exactly as :func:`canonical_json` writes it.

    Hex digests (the common case) need no escaping; anything else goes through :mod:`json`.
    """
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return json.dumps(text, ensure_ascii=False)
