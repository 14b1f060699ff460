"""Parsing KG text files into string rows, and string rows into integer id arrays.

Line rules (the same the offline mirror's ``MANIFEST.json`` counts use):
the text is decoded as UTF-8 (a leading BOM is dropped), split on ``\\n``, a
trailing ``\\r`` is stripped (FB15k-237 ships CRLF), blank lines are skipped,
and fields are split on the delimiter (TAB).  Nothing else is normalised; ids
stay strings (WN18RR synset offsets keep their leading zeros).

Formats:

- ``triples``: ``head<TAB>relation<TAB>tail`` -> row ``[relation, head, tail]``;
  exactly 3 fields.
- ``hyperedges``: ``relation<TAB>e1<TAB>e2[<TAB>...]`` -> row
  ``[relation, e1, ..., ek]``; at least 3 fields (arity k >= 2).

With ``instance_id_column`` the first field (JF17K test files: ``instance0``)
is dropped before the rules above apply.

A malformed line (wrong field count, an empty field) raises
``KGCError("path:LINE: expected 3 fields, got 2")`` under
``on_bad_lines="error"``; ``"warn"`` skips it with one ``UserWarning`` per file
(count and first offending lines), ``"skip"`` skips it silently - as in
pandas' ``read_csv(on_bad_lines=...)``.
"""

from __future__ import annotations

import warnings

import numpy as np

from kgc.errors import KGCError

ON_BAD_LINES = ("error", "warn", "skip")
#: Bumped when parsing semantics change; part of every dataset fingerprint (and so of the cache key).
PARSE_VERSION = 2  # bumped when parsing or format detection changes


def decode_text(data: bytes, source: str) -> str:
    """UTF-8 decode (BOM dropped); a decoding error names the file and line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise KGCError(f"{source}:{line}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None


def split_fields(text: str, delimiter: str = "\t") -> list[tuple[int, list[str]]]:
    """``[(line_number, fields), ...]`` for the non-blank lines of ``text`` (1-based line numbers)."""
    out = []
    for i, line in enumerate(text.split("\n"), start=1):
        if line.endswith("\r"):
            line = line[:-1]
        if not line.strip():
            continue
        out.append((i, line.split(delimiter)))
    return out


def detect_format(field_rows: list[list[tuple[int, list[str]]]]) -> str:
    """Format of a custom dataset when none is declared.

    Rule: if every non-blank line has exactly 3 fields the data are ``triples``
    (``head<TAB>relation<TAB>tail``). If some lines have more, the data are
    ``hyperedges`` (``relation<TAB>e1<TAB>e2...``) only when column 0 looks like
    the relation column, i.e. has fewer distinct values than column 1 (relations
    are few, entities many); otherwise they are triples whose long lines are
    malformed (e.g. a tab inside a name) and are reported as such, never
    silently re-read with the relation taken from another column. An n-ary
    dataset whose facts are all binary is indistinguishable from triples:
    declare ``format="hyperedges"``.
    """
    long_lines = any(len(f) > 3 for rows in field_rows for _, f in rows)
    if not long_lines:
        return "triples"
    col0 = {f[0] for rows in field_rows for _, f in rows if len(f) >= 2}
    col1 = {f[1] for rows in field_rows for _, f in rows if len(f) >= 2}
    return "hyperedges" if len(col0) < len(col1) else "triples"


def rows_from_fields(
    rows: list[tuple[int, list[str]]],
    source: str,
    fmt: str,
    instance_id_column: bool = False,
    on_bad_lines: str = "error",
) -> list[list[str]]:
    """Validate field lists and reorder them into ``[relation, e1, ..., ek]`` rows of strings."""
    if on_bad_lines not in ON_BAD_LINES:
        raise KGCError(f"on_bad_lines must be one of {', '.join(ON_BAD_LINES)}, got {on_bad_lines!r}")
    if fmt not in ("triples", "hyperedges"):
        raise KGCError(f"format must be 'triples' or 'hyperedges', got {fmt!r}")
    skip = 1 if instance_id_column else 0
    out: list[list[str]] = []
    bad: list[str] = []
    for lineno, fields in rows:
        n = len(fields) - skip
        problem = None
        if fmt == "triples" and n != 3:
            problem = f"expected {3 + skip} fields, got {len(fields)}"
        elif fmt == "hyperedges" and n < 3:
            problem = f"expected at least {3 + skip} fields (relation and 2+ entities), got {len(fields)}"
        else:
            for j, f in enumerate(fields, start=1):
                if not f.strip():
                    problem = f"field {j} is empty"
                    break
        if problem is not None:
            msg = f"{source}:{lineno}: {problem}"
            if on_bad_lines == "error":
                raise KGCError(msg)
            bad.append(msg)
            continue
        fs = fields[skip:]
        out.append([fs[1], fs[0], fs[2]] if fmt == "triples" else fs)
    if bad and on_bad_lines == "warn":
        shown = "; ".join(bad[:3]) + (f"; ... ({len(bad) - 3} more)" if len(bad) > 3 else "")
        warnings.warn(f"{source}: skipped {len(bad)} malformed line(s): {shown}", UserWarning, stacklevel=2)
    return out


def parse_text(data: bytes, source: str, fmt: str, delimiter: str = "\t",
               instance_id_column: bool = False, on_bad_lines: str = "error") -> list[list[str]]:
    """Bytes of one split file -> ``[[relation, e1, ..., ek], ...]`` (strings)."""
    return rows_from_fields(split_fields(decode_text(data, source), delimiter), source, fmt,
                            instance_id_column, on_bad_lines)


def index_rows(split_rows: dict[str, list[list[str]]]) -> tuple[list[str], list[str], dict[str, np.ndarray], int]:
    """Map string rows of all splits to integer arrays.

    Entity and relation ids are the positions of the raw names in sorted order
    over all splits (entities that occur only in valid/test are kept).

    Returns ``(entity_names, relation_names, arrays, max_arity)`` where
    ``arrays[split]`` is int64 ``(N, 1 + max_arity)`` = ``[relation, e1..ek, -1 pad]``.
    """
    ents: set[str] = set()
    rels: set[str] = set()
    max_arity = 2
    for rows in split_rows.values():
        for row in rows:
            rels.add(row[0])
            ents.update(row[1:])
            if len(row) - 1 > max_arity:
                max_arity = len(row) - 1
    entity_names = sorted(ents)
    relation_names = sorted(rels)
    e2i = {e: i for i, e in enumerate(entity_names)}
    r2i = {r: i for i, r in enumerate(relation_names)}
    width = 1 + max_arity
    arrays: dict[str, np.ndarray] = {}
    for split, rows in split_rows.items():
        arr = np.full((len(rows), width), -1, dtype=np.int64)
        if rows and all(len(r) == width for r in rows):
            flat = [r2i[r[0]] if j == 0 else e2i[r[j]] for r in rows for j in range(width)]
            arr[:] = np.asarray(flat, dtype=np.int64).reshape(len(rows), width)
        else:
            for i, r in enumerate(rows):
                arr[i, 0] = r2i[r[0]]
                arr[i, 1 : len(r)] = [e2i[e] for e in r[1:]]
        arrays[split] = arr
    return entity_names, relation_names, arrays, max_arity
