"""On-disk cache of generated signal examples.

One ``.npz`` file (``numpy.savez``; read with ``allow_pickle=False``) per
(dataset fingerprint, signal name, signal config, number of examples, seed,
vocabulary layout, :data:`FORMAT_VERSION`) under
``kgc_home()/signals/<dataset>/<signal>-<key>.npz``, written atomically
(:func:`kgc.utils.io.atomic_write`). ``key`` is the first 20 hex digits of the
sha256 of those fields (as canonical JSON); the same JSON is stored inside the
file as ``meta`` and checked on load, so a file from another dataset version,
vocabulary layout or format is regenerated (and overwritten) rather than used.
A damaged file is regenerated as well.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from kgc.utils.io import atomic_write, kgc_home
from kgc.vocab import LEGACY_TASKS

from .examples import SignalExamples

#: Bump when the token layout of any signal changes: old caches are then rebuilt.
FORMAT_VERSION = 1


def cache_meta(dataset, vocab, name: str, config, num_examples: int | None, seed: int) -> dict:
    cfg = asdict(config) if is_dataclass(config) else dict(config or {})
    meta = {
        "format_version": FORMAT_VERSION,
        "dataset": dataset.name,
        "fingerprint": dataset.fingerprint,
        "signal": name,
        "config": cfg,
        "num_examples": num_examples,
        "seed": int(seed),
        "vocab": {
            "size": len(vocab),
            "relation_offset": vocab.relation_offset,
            "entity_offset": vocab.entity_offset,
            "max_hops": vocab.max_hops,
            "num_buckets": vocab.num_buckets,
            "format_version": vocab.format_version,
        },
    }
    if list(vocab.tasks) != list(LEGACY_TASKS):
        # the task list moves task tokens and ids; the legacy list is left out of the key so that the
        # caches written before the list was stored stay valid (same tokens, same ids)
        meta["vocab"]["tasks"] = list(vocab.tasks)
    return meta


def _canonical(meta: dict) -> str:
    return json.dumps(meta, sort_keys=True, separators=(",", ":"), default=str)


def cache_path(meta: dict, root: Path | None = None) -> Path:
    key = hashlib.sha256(_canonical(meta).encode()).hexdigest()[:20]
    safe_ds = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(meta["dataset"])) or "dataset"
    return (root or kgc_home() / "signals") / safe_ds / f"{meta['signal']}-{key}.npz"


def save_examples(path: Path, ex: SignalExamples, meta: dict) -> None:
    meta_bytes = np.frombuffer(_canonical(meta).encode(), dtype=np.uint8)
    with atomic_write(path, "wb") as fh:
        np.savez(fh, tokens=ex.tokens, prefix_len=ex.prefix_len, task=ex.task, source=ex.source, meta=meta_bytes)


def load_examples(path: Path, meta: dict) -> SignalExamples | None:
    """The cached examples at ``path`` if it exists and its stored meta equals ``meta``; else None."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            stored = bytes(z["meta"]).decode()
            if stored != _canonical(meta):
                return None
            return SignalExamples(meta["signal"], z["tokens"], z["prefix_len"], z["task"], z["source"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError):
        return None


def cached_generate(signal, dataset, graph, vocab, num_examples: int | None = None, seed: int = 0,
                    root: Path | None = None, use_cache: bool = True,
                    log: Callable[[str], None] | None = None) -> SignalExamples:
    """``signal.generate(...)`` through the cache. ``log`` receives 'hit'/'built' messages."""
    meta = cache_meta(dataset, vocab, signal.name, signal.config, num_examples, seed)
    path = cache_path(meta, root)
    if use_cache:
        ex = load_examples(path, meta)
        if ex is not None:
            if log:
                log(f"{signal.name}: {len(ex)} sequences from cache {path}")
            return ex
    ex = signal.generate(dataset, graph, vocab, num_examples=num_examples, seed=seed)
    if use_cache:
        save_examples(path, ex, meta)
    if log:
        log(f"{signal.name}: generated {len(ex)} sequences" + (f" (cached at {path})" if use_cache else ""))
    return ex
