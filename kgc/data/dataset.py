"""The :class:`KGDataset` object and its on-disk cache (loading is :mod:`kgc.data.load`).

Contract (docs/architecture.md, "Data"): splits are int64 tensors
``(N, 1 + max_arity)`` with rows ``[relation, e_1, ..., e_k, -1, ...]``;
entity/relation ids are the positions of the raw names sorted over all splits;
entities that occur only in valid/test are kept (they are ranking candidates
without train edges) and counted by ``python -m kgc.data stats``.

Cache: parsed arrays live in ``kgc_home()/datasets/<name>/<fingerprint>/`` as
``arrays.npz`` (int64, loaded with ``allow_pickle=False``) and ``meta.json``
(names and metadata); no pickle.  The folder is built under a temp name and
renamed into place, so an interrupted load never leaves a half-written cache
entry.  The fingerprint covers the source files' sha256s, the parse options and
:data:`kgc.data.parse.PARSE_VERSION`; :data:`CACHE_FORMAT` versions the layout
of the cache files themselves.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from kgc.errors import KGCError
from kgc.data.parse import PARSE_VERSION
from kgc.data.registry import SPLITS
from kgc.utils.io import kgc_home

CACHE_FORMAT = 1


def fingerprint_of(parts: Mapping[str, Any]) -> str:
    """sha256 over a canonical JSON of ``parts`` (source sha256s + parse options) and PARSE_VERSION."""
    payload = json.dumps({"parse_version": PARSE_VERSION, **parts}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


class KGDataset:
    """A knowledge graph (or hypergraph) with train/valid/test splits.

    Attributes (see docs/architecture.md): ``name``, ``entity_names``,
    ``relation_names``, ``entity_to_id``, ``relation_to_id``, ``num_entities``,
    ``num_relations``, ``max_arity``, ``is_binary``, ``splits`` (``"train"``,
    ``"valid"``, ``"test"`` -> int64 ``(N, 1 + max_arity)``), ``fingerprint``;
    ``metadata`` holds provenance (manifest name, source, policy notes).
    """

    def __init__(
        self,
        name: str,
        entity_names: list[str],
        relation_names: list[str],
        splits: Mapping[str, np.ndarray | torch.Tensor],
        fingerprint: str,
        metadata: dict[str, Any] | None = None,
    ):
        self.name = name
        self.entity_names = list(entity_names)
        self.relation_names = list(relation_names)
        self.entity_to_id = {e: i for i, e in enumerate(self.entity_names)}
        self.relation_to_id = {r: i for i, r in enumerate(self.relation_names)}
        widths = set()
        self.splits: dict[str, torch.Tensor] = {}
        for s in SPLITS:
            arr = splits.get(s)
            t = torch.as_tensor(arr, dtype=torch.int64) if arr is not None else None
            self.splits[s] = t  # type: ignore[assignment]
            if t is not None:
                if t.dim() != 2:
                    raise KGCError(f"dataset {name!r}: split {s!r} must be 2-D (N, 1 + max_arity), got {tuple(t.shape)}")
                widths.add(t.shape[1])
        if len(widths) > 1:
            raise KGCError(f"dataset {name!r}: splits have different widths {sorted(widths)}")
        width = widths.pop() if widths else 3
        for s in SPLITS:
            if self.splits[s] is None:
                self.splits[s] = torch.empty((0, width), dtype=torch.int64)
        self.max_arity = max(2, width - 1)
        self.fingerprint = fingerprint
        self.metadata = dict(metadata or {})

    @property
    def num_entities(self) -> int:
        return len(self.entity_names)

    @property
    def num_relations(self) -> int:
        return len(self.relation_names)

    @property
    def is_binary(self) -> bool:
        return self.max_arity == 2

    def arity(self, split: str) -> torch.Tensor:
        """Arity of each fact of ``split``: ``(N,)`` int64 (number of non-pad entity columns)."""
        return (self._split(split)[:, 1:] >= 0).sum(1)

    def triples(self, split: str) -> torch.Tensor:
        """``(N, 3)`` int64 columns (head, relation, tail); binary datasets only."""
        if not self.is_binary:
            raise KGCError(f"dataset {self.name!r} has facts of arity up to {self.max_arity}; triples() needs a binary KG")
        f = self._split(split)
        return torch.stack([f[:, 1], f[:, 0], f[:, 2]], dim=1)

    def all_facts(self) -> torch.Tensor:
        """train + valid + test concatenated: ``(N_all, 1 + max_arity)``."""
        return torch.cat([self.splits[s] for s in SPLITS], dim=0)

    def with_valid_from_train(self, fraction: float = 0.05, seed: int = 0) -> "KGDataset":
        """A copy whose valid split is a seeded random ``fraction`` of train (removed from train).

        For datasets that ship no validation split (``jf17k-sir``).  Ids and names
        are unchanged; the fingerprint records the hold-out so caches/vocabularies
        never mix the two variants.
        """
        if not 0.0 < fraction < 1.0:
            raise KGCError(f"fraction must be in (0, 1), got {fraction}")
        train = self.splits["train"]
        perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(train)))
        n_valid = int(round(fraction * len(train)))
        keep, held = perm[n_valid:].sort().values, perm[:n_valid].sort().values
        fp = fingerprint_of({"base": self.fingerprint, "valid_from_train": [fraction, seed]})
        meta = dict(self.metadata, valid_policy=f"valid = seeded {fraction:.3f} hold-out of train (seed {seed})")
        return KGDataset(self.name, self.entity_names, self.relation_names,
                         {"train": train[keep], "valid": train[held], "test": self.splits["test"]}, fp, meta)

    def _split(self, split: str) -> torch.Tensor:
        if split not in self.splits:
            raise KGCError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
        return self.splits[split]

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={len(self.splits[s])}" for s in SPLITS)
        return (f"KGDataset({self.name!r}, entities={self.num_entities}, relations={self.num_relations}, "
                f"max_arity={self.max_arity}, {sizes})")


# ----------------------------------------------------------------------------- cache


def cache_dir(name: str, fingerprint: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "dataset"
    return kgc_home() / "datasets" / safe / fingerprint


def read_cache(name: str, fingerprint: str) -> KGDataset | None:
    """The cached dataset, or None if absent/stale (an unreadable entry is treated as absent)."""
    d = cache_dir(name, fingerprint)
    meta_path, arr_path = d / "meta.json", d / "arrays.npz"
    if not (meta_path.is_file() and arr_path.is_file()):
        return None
    try:
        with open(meta_path) as fh:
            meta = json.load(fh)
        if meta.get("cache_format") != CACHE_FORMAT or meta.get("fingerprint") != fingerprint:
            return None
        with np.load(arr_path, allow_pickle=False) as z:
            arrays = {s: z[s] for s in SPLITS}
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None
    md = dict(meta.get("metadata", {}), from_cache=True)
    return KGDataset(meta["name"], meta["entity_names"], meta["relation_names"], arrays, fingerprint, md)


def _remove_stale_temps(folder: Path, max_age_s: float = 3600.0) -> None:
    """Delete ``.*.tmp`` folders a killed process left behind (older than ``max_age_s``)."""
    now = time.time()
    for p in folder.glob(".*.tmp"):
        try:
            if now - p.stat().st_mtime > max_age_s:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


def write_cache(ds: KGDataset) -> Path:
    """Write ``ds`` to its cache folder atomically (temp folder + rename); returns the folder."""
    final = cache_dir(ds.name, ds.fingerprint)
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(final.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        with open(tmp / "arrays.npz", "wb") as fh:
            np.savez(fh, **{s: ds.splits[s].numpy() for s in SPLITS})
        meta = {
            "cache_format": CACHE_FORMAT,
            "parse_version": PARSE_VERSION,
            "fingerprint": ds.fingerprint,
            "name": ds.name,
            "entity_names": ds.entity_names,
            "relation_names": ds.relation_names,
            "metadata": {k: v for k, v in ds.metadata.items() if k != "from_cache"},
        }
        with open(tmp / "meta.json", "w") as fh:
            json.dump(meta, fh)
        for p in tmp.iterdir():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
        try:
            os.replace(tmp, final)
        except OSError:
            # ``final`` exists: either another process just wrote a good entry (keep it) or it is stale/corrupt
            if read_cache(ds.name, ds.fingerprint) is None:
                shutil.rmtree(final, ignore_errors=True)
                os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
