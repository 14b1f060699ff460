"""Published link-prediction results (``kgc/reports/published.yaml``): load and validate.

The file is versioned (top-level ``version:``); each entry has ``dataset`` (one of
:data:`DATASETS`; the two JF17K releases are kept apart), ``model``, ``mrr`` and Hits@1/3/10
(fractions in [0, 1]; a number the source does not give is left out, never guessed; at least one metric), ``mr`` when
given, ``tie_policy`` when the paper states it, ``citation`` and ``source`` (where the numbers were
read), and optionally ``note``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from kgc.errors import KGCError
from kgc.utils.io import read_yaml

PUBLISHED_PATH = Path(str(files("kgc.reports") / "published.yaml"))
DATASETS = ("fb15k237", "wn18rr", "jf17k", "jf17k-sir")
FRACTION_KEYS = ("mrr", "hits@1", "hits@3", "hits@10")
ALLOWED_KEYS = {"dataset", "model", "mr", "tie_policy", "citation", "source", "note", *FRACTION_KEYS}


@dataclass(frozen=True)
class PublishedRow:
    dataset: str
    model: str
    metrics: dict  # subset of mrr, mr, hits@1, hits@3, hits@10 (only what the source gives)
    citation: str
    source: str
    tie_policy: str | None = None
    note: str | None = None


def load_published(path: str | os.PathLike | None = None) -> tuple[str, list[PublishedRow]]:
    """``(version, rows)`` from the published-results file; a malformed entry is a one-line :class:`KGCError`."""
    path = Path(path) if path is not None else PUBLISHED_PATH
    data = read_yaml(path)
    if not isinstance(data, dict) or "version" not in data or not isinstance(data.get("results"), list):
        raise KGCError(f"{path}: expected a mapping with 'version' and a 'results' list")
    rows = []
    for i, entry in enumerate(data["results"]):
        where = f"{path}: results[{i}]"
        if not isinstance(entry, dict):
            raise KGCError(f"{where} is not a mapping")
        unknown = sorted(set(entry) - ALLOWED_KEYS)
        if unknown:
            raise KGCError(f"{where}: unknown key {unknown[0]!r}")
        for key in ("dataset", "model", "citation", "source"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise KGCError(f"{where}: '{key}' must be a non-empty string")
        if entry["dataset"] not in DATASETS:
            raise KGCError(f"{where}: dataset {entry['dataset']!r} is not one of {', '.join(DATASETS)}")
        metrics = {}
        for key in FRACTION_KEYS:
            if key in entry:
                v = entry[key]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                    raise KGCError(f"{where}: '{key}' must be a fraction in [0, 1], got {v!r}")
                metrics[key] = float(v)
        if "mr" in entry:
            v = entry["mr"]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 1:
                raise KGCError(f"{where}: 'mr' must be a number >= 1, got {v!r}")
            metrics["mr"] = float(v)
        if not metrics:
            raise KGCError(f"{where}: no metric given (need at least one of mrr, mr, hits@1, hits@3, hits@10)")
        rows.append(PublishedRow(dataset=entry["dataset"], model=entry["model"], metrics=metrics,
                                 citation=entry["citation"].strip(), source=entry["source"].strip(),
                                 tie_policy=entry.get("tie_policy"), note=entry.get("note")))
    return str(data["version"]), rows
