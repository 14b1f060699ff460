"""Loading a knowledge graph: :func:`load_dataset` dispatches on the source (registered name, synthetic,
folder, manifest path, DataFrame); :func:`load_registered` fetches, verifies, parses and caches a
manifest dataset.

The loaders of each kind of source (:mod:`kgc.data.custom`, :mod:`kgc.data.synthetic`) build on
:mod:`kgc.data.dataset` (the :class:`~kgc.data.dataset.KGDataset` object and its cache); this module sits
above them all, so the dependencies run one way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kgc.data import custom, registry, synthetic
from kgc.data.dataset import KGDataset, fingerprint_of, read_cache, write_cache
from kgc.data.download import file_bytes, read_tar_members, verify_bytes
from kgc.data.parse import ON_BAD_LINES, index_rows, parse_text
from kgc.errors import KGCError


def load_dataset(source: Any = "synthetic", *, on_bad_lines: str = "error", format: str | None = None,
                 use_cache: bool = True, progress: bool | None = None, **kwargs: Any) -> KGDataset:
    """Load a knowledge graph.

    ``source`` is one of:

    - a registered name (``fb15k237``, ``wn18rr``, ``jf17k``, ``jf17k-sir``,
      ``umls``, ``kinships``, ``nations``; aliases like ``FB15k-237`` work);
    - ``"synthetic"`` (kwargs ``seed``, ``num_entities`` ...; see
      :mod:`kgc.data.synthetic`), also ``"synthetic:seed=3,num_entities=500"``;
    - a folder with ``train.txt``/``valid.txt``/``test.txt`` (``format`` =
      ``"triples"``/``"hyperedges"``, else detected; see :mod:`kgc.data.custom`);
    - a path to a manifest ``.yaml`` laid out like ``datasets/*.yaml``;
    - a pandas DataFrame with columns head/relation/tail and split, or a
      mapping ``{"train": df, "valid": df, "test": df}``.

    ``on_bad_lines`` (``error``/``warn``/``skip``) governs malformed lines.
    """
    if not isinstance(source, (str, os.PathLike)):
        return custom.load_dataframe(source, on_bad_lines=on_bad_lines, **kwargs)
    text = os.fspath(source)
    if text == "synthetic" or text.startswith("synthetic:"):
        return synthetic.load_synthetic(text, **kwargs)
    if kwargs:
        raise KGCError(f"unexpected keyword argument(s) {sorted(kwargs)} for dataset {text!r}")
    path = Path(text).expanduser()
    if path.is_dir():
        return custom.load_folder(path, format=format, on_bad_lines=on_bad_lines, use_cache=use_cache)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return load_registered(registry.load_manifest(path), on_bad_lines=on_bad_lines, use_cache=use_cache,
                               progress=progress)
    manifest = registry.find_manifest(text)
    if manifest is None:
        if os.sep in text or text.startswith("."):
            raise KGCError(f"{text}: no such folder (a custom dataset is a folder with train.txt, valid.txt, test.txt)")
        registry.get_manifest(text)  # raises the 'unknown dataset' error listing known names
    assert manifest is not None
    return load_registered(manifest, on_bad_lines=on_bad_lines, use_cache=use_cache, progress=progress)


def load_registered(manifest, *, on_bad_lines: str = "error", use_cache: bool = True,
                    progress: bool | None = None) -> KGDataset:
    """Load a manifest dataset: cache hit, else fetch -> verify -> extract -> parse -> index -> cache."""
    if on_bad_lines not in ON_BAD_LINES:
        raise KGCError(f"on_bad_lines must be one of {', '.join(ON_BAD_LINES)}, got {on_bad_lines!r}")
    fp = fingerprint_of({
        "kind": "registered",
        "name": manifest.name,
        "files": {f.name: f.sha256 for f in manifest.files},
        "splits": {s: (None if sp is None else [sp.file, sp.member, sp.instance_id_column])
                   for s, sp in manifest.splits.items()},
        "format": manifest.format,
        "delimiter": manifest.delimiter,
        "on_bad_lines": on_bad_lines,
    })
    if use_cache:
        hit = read_cache(manifest.name, fp)
        if hit is not None:
            return hit
    blobs: dict[str, bytes] = {}
    members: dict[tuple[str, str], bytes] = {}
    split_rows: dict[str, list[list[str]]] = {}
    for split, sp in manifest.splits.items():
        if sp is None:
            split_rows[split] = []
            continue
        spec = manifest.file(sp.file)
        if sp.file not in blobs:
            blobs[sp.file] = file_bytes(manifest, spec, progress=progress)
        source = f"{manifest.directory}/{sp.file}"
        if sp.member is not None:
            if (sp.file, sp.member) not in members:
                wanted = [s.member for s in manifest.splits.values() if s is not None and s.file == sp.file and s.member]
                got = read_tar_members(blobs[sp.file], source, wanted)
                for mname, mbytes in got.items():
                    mspec = manifest.member(spec, mname)
                    if mspec is not None and mspec.sha256:
                        verify_bytes(mbytes, mspec.sha256, f"{source}:{mname}")
                    members[(sp.file, mname)] = mbytes
            data, source = members[(sp.file, sp.member)], f"{source}:{sp.member}"
        else:
            data = blobs[sp.file]
        split_rows[split] = parse_text(data, source, manifest.format, manifest.delimiter,
                                       sp.instance_id_column, on_bad_lines)
        if not split_rows[split]:
            raise KGCError(f"{source}: split {split!r} is empty (no facts)")
    ents, rels, arrays, _ = index_rows(split_rows)
    meta = {
        "source": "registry",
        "manifest": str(manifest.path),
        "title": manifest.title,
        "format": manifest.format,
        "citation": manifest.citation,
    }
    if manifest.splits.get("valid") is None:
        meta["valid_policy"] = ("no validation split is distributed: valid is empty; "
                                "use KGDataset.with_valid_from_train(fraction, seed) for a seeded hold-out")
    ds = KGDataset(manifest.name, ents, rels, arrays, fp, meta)
    _check_expected(ds, manifest, on_bad_lines)
    if use_cache:
        write_cache(ds)
    return ds


def _check_expected(ds: KGDataset, manifest, on_bad_lines: str) -> None:
    """Guard against parser drift: the parsed counts must equal the manifest's ``counts``."""
    exp = manifest.expected or {}
    if on_bad_lines != "error" or not exp:
        return
    got = {"entities": ds.num_entities, "relations": ds.num_relations, "max_arity": ds.max_arity}
    for key, val in got.items():
        if key in exp and int(exp[key]) != val:
            raise KGCError(f"{manifest.path}: counts.{key} is {exp[key]} but parsing gave {val}")
    for split, n in (exp.get("facts") or {}).items():
        if split in ds.splits and int(n) != len(ds.splits[split]):
            raise KGCError(f"{manifest.path}: counts.facts.{split} is {n} but parsing gave {len(ds.splits[split])}")

