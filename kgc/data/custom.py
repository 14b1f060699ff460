"""Custom datasets: a folder of TSV files, or pandas DataFrames.

Folder layout: ``train.txt``, ``valid.txt``, ``test.txt`` (all three
required, none may be empty).  Each non-blank line is either a triple
``head<TAB>relation<TAB>tail`` or a hyperedge ``relation<TAB>e1<TAB>e2[...]``.
Pass ``format="triples"`` / ``"hyperedges"`` to declare it; otherwise it is
detected by :func:`kgc.data.parse.detect_format` (all lines of 3 fields ->
triples; longer lines -> hyperedges only if column 0 has fewer distinct values
than column 1, i.e. looks like the relation column).  CRLF line ends and a UTF-8 BOM are
handled; empty fields and wrong field counts are errors naming ``path:LINE``
unless ``on_bad_lines`` is ``"warn"``/``"skip"``.  The dataset name is the
folder name; the parsed result is cached keyed by the files' sha256s.

DataFrames: one frame with columns ``head``, ``relation``, ``tail`` and
``split`` (values train/valid/test), or a mapping ``{"train": df, "valid": df,
"test": df}`` of frames with columns head/relation/tail.  Values are turned
into strings; missing/empty values follow ``on_bad_lines`` (row numbers are
the frame's 0-based positions).
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any, Mapping

from kgc.errors import KGCError
from kgc.data.dataset import KGDataset, fingerprint_of, read_cache, write_cache
from kgc.data.parse import ON_BAD_LINES, decode_text, detect_format, index_rows, rows_from_fields, split_fields
from kgc.data.registry import SPLITS


def load_folder(folder: str | Path, format: str | None = None, on_bad_lines: str = "error",
                use_cache: bool = True) -> KGDataset:
    """Load ``folder/{train,valid,test}.txt`` as a :class:`KGDataset` (see module docstring)."""
    folder = Path(folder)
    if on_bad_lines not in ON_BAD_LINES:
        raise KGCError(f"on_bad_lines must be one of {', '.join(ON_BAD_LINES)}, got {on_bad_lines!r}")
    if format not in (None, "triples", "hyperedges"):
        raise KGCError(f"format must be 'triples', 'hyperedges' or None (detect), got {format!r}")
    paths = {s: folder / f"{s}.txt" for s in SPLITS}
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        raise KGCError(f"{folder}: missing {', '.join(missing)} (a custom dataset needs train.txt, valid.txt, test.txt)")
    blobs = {s: p.read_bytes() for s, p in paths.items()}
    name = folder.resolve().name or "custom"
    fp = fingerprint_of({
        "kind": "folder",
        "files": {s: hashlib.sha256(b).hexdigest() for s, b in blobs.items()},
        "format": format,
        "on_bad_lines": on_bad_lines,
    })
    if use_cache:
        hit = read_cache(name, fp)
        if hit is not None:
            return hit
    fields = {s: split_fields(decode_text(b, str(paths[s]))) for s, b in blobs.items()}
    fmt = format or detect_format(list(fields.values()))
    rows = {}
    for s in SPLITS:
        rows[s] = rows_from_fields(fields[s], str(paths[s]), fmt, False, on_bad_lines)
        if not rows[s]:
            raise KGCError(f"{paths[s]}: split {s!r} is empty (no facts)")
    ents, rels, arrays, _ = index_rows(rows)
    ds = KGDataset(name, ents, rels, arrays, fp, {"source": "folder", "path": str(folder), "format": fmt})
    if use_cache:
        write_cache(ds)
    return ds


def _frame_rows(df: Any, where: str, on_bad_lines: str) -> list[list[str]]:
    cols = ["head", "relation", "tail"]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KGCError(f"{where}: missing column(s) {missing} (need head, relation, tail)")
    out: list[list[str]] = []
    bad: list[str] = []
    values = df[cols].itertuples(index=False, name=None)
    for i, (h, r, t) in enumerate(values):
        row = []
        for col, v in zip(cols, (h, r, t)):
            s = "" if v is None or (isinstance(v, float) and v != v) else str(v)
            if not s.strip():
                msg = f"{where}: row {i}: field {col!r} is empty"
                if on_bad_lines == "error":
                    raise KGCError(msg)
                bad.append(msg)
                row = []
                break
            row.append(s)
        if row:
            out.append([row[1], row[0], row[2]])
    if bad and on_bad_lines == "warn":
        warnings.warn(f"{where}: skipped {len(bad)} malformed row(s): {'; '.join(bad[:3])}", UserWarning, stacklevel=3)
    return out


def load_dataframe(data: Any, name: str = "dataframe", on_bad_lines: str = "error") -> KGDataset:
    """Load triples from a DataFrame with a ``split`` column, or a mapping split -> DataFrame."""
    import pandas as pd

    if on_bad_lines not in ON_BAD_LINES:
        raise KGCError(f"on_bad_lines must be one of {', '.join(ON_BAD_LINES)}, got {on_bad_lines!r}")
    frames: dict[str, Any]
    if isinstance(data, pd.DataFrame):
        if "split" not in data.columns:
            raise KGCError("DataFrame: missing column 'split' (values train/valid/test); "
                           "or pass {'train': df, 'valid': df, 'test': df}")
        unknown = sorted(set(map(str, data["split"].unique())) - set(SPLITS))
        if unknown:
            raise KGCError(f"DataFrame: column 'split' has unknown value(s) {unknown} (known: {', '.join(SPLITS)})")
        frames = {s: data[data["split"] == s] for s in SPLITS}
    elif isinstance(data, Mapping):
        unknown = sorted(set(data) - set(SPLITS))
        if unknown:
            raise KGCError(f"unknown split(s) {unknown} (known: {', '.join(SPLITS)})")
        frames = {}
        for s in SPLITS:
            if s not in data:
                raise KGCError(f"missing split {s!r} (need train, valid, test DataFrames)")
            if not isinstance(data[s], pd.DataFrame):
                raise KGCError(f"split {s!r}: expected a pandas DataFrame, got {type(data[s]).__name__}")
            frames[s] = data[s]
    else:
        raise KGCError(f"cannot load a dataset from {type(data).__name__}: pass a name, a folder path or a DataFrame")
    rows = {}
    for s in SPLITS:
        rows[s] = _frame_rows(frames[s], f"DataFrame[{s}]", on_bad_lines)
        if not rows[s]:
            raise KGCError(f"DataFrame: split {s!r} is empty (no facts)")
    h = hashlib.sha256()
    for s in SPLITS:
        for r in rows[s]:
            h.update(("\t".join(r) + "\n").encode())
        h.update(f"--{s}--".encode())
    fp = fingerprint_of({"kind": "dataframe", "content": h.hexdigest()})
    ents, rels, arrays, _ = index_rows(rows)
    return KGDataset(name, ents, rels, arrays, fp, {"source": "dataframe", "format": "triples"})
