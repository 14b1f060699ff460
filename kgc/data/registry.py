"""Dataset registry: the YAML manifests in the repository's ``datasets/`` folder.

Each ``datasets/<name>.yaml`` describes one public benchmark: where its files
live (canonical URL plus alternates), the sha256 of every file and archive
member, how the splits map to files/members, the text format (delimiter,
columns, CRLF, a leading instance-id column in JF17K test files), the expected
counts, the license and the citation.  The facts come from the offline mirror's
``MANIFEST.json``.

The manifests ship as package data (:func:`kgc.resources.manifests_dir`: the
repository's ``datasets/`` in a checkout, a copy inside an installed wheel).
``KGC_DATASETS_DIR`` overrides the folder (e.g. a site's own manifests).

Manifests are read with ``yaml.safe_load`` and validated strictly: a missing
or mistyped key is a one-line :class:`kgc.KGCError` naming the file and key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kgc.errors import KGCError
from kgc.utils.io import read_yaml

SPLITS: tuple[str, ...] = ("train", "valid", "test")
FORMATS: tuple[str, ...] = ("triples", "hyperedges")
_HEX = set("0123456789abcdef")


def datasets_dir() -> Path:
    """Folder holding the ``<name>.yaml`` manifests."""
    env = os.environ.get("KGC_DATASETS_DIR")
    if env:
        return Path(env).expanduser()
    from kgc.resources import manifests_dir

    return manifests_dir()


@dataclass(frozen=True)
class MemberSpec:
    """One member of an archive file (name inside the archive, its sha256 and size)."""

    name: str
    sha256: str | None = None
    bytes: int | None = None


@dataclass(frozen=True)
class FileSpec:
    """One distributed file: ``<mirror>/<directory>/<name>``, fetched from ``url`` (then ``alt_urls``)."""

    name: str
    url: str
    sha256: str
    bytes: int | None = None
    alt_urls: tuple[str, ...] = ()
    archive: str | None = None  # "tar.gz" / "tar" / None
    members: tuple[MemberSpec, ...] = ()

    @property
    def urls(self) -> tuple[str, ...]:
        return (self.url, *self.alt_urls)


@dataclass(frozen=True)
class SplitSpec:
    """Where a split's text comes from: a file, or a member of an archive file."""

    file: str
    member: str | None = None
    instance_id_column: bool = False


@dataclass(frozen=True)
class Manifest:
    """A validated ``datasets/<name>.yaml``."""

    name: str
    directory: str
    format: str  # "triples" | "hyperedges"
    delimiter: str
    files: tuple[FileSpec, ...]
    splits: dict[str, SplitSpec | None]  # None: the dataset has no such split (loaded empty)
    expected: dict[str, Any]  # counts: entities, relations, max_arity, facts{train,valid,test}
    path: Path
    aliases: tuple[str, ...] = ()
    title: str = ""
    license: Any = None
    citation: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def file(self, name: str) -> FileSpec:
        for f in self.files:
            if f.name == name:
                return f
        raise KGCError(f"{self.path}: splits refer to file {name!r}, which is not listed under 'files'")

    def member(self, file: FileSpec, name: str) -> MemberSpec | None:
        for m in file.members:
            if m.name == name:
                return m
        return None


def _req(d: dict, key: str, typ: type | tuple, where: str) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise KGCError(f"{where}: missing key {key!r}")
    val = d[key]
    if not isinstance(val, typ) or (typ is int and isinstance(val, bool)):
        tname = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise KGCError(f"{where}.{key}: expected {tname}, got {type(val).__name__}")
    return val


def _sha(val: Any, where: str) -> str:
    if not isinstance(val, str) or len(val) != 64 or not set(val) <= _HEX:
        raise KGCError(f"{where}: expected a 64-digit lowercase hex sha256, got {val!r}")
    return val


def parse_manifest(data: Any, path: Path) -> Manifest:
    """Validate a manifest mapping (as read from YAML) into a :class:`Manifest`."""
    where = str(path)
    if not isinstance(data, dict):
        raise KGCError(f"{where}: a manifest must be a YAML mapping")
    name = _req(data, "name", str, where)
    directory = _req(data, "directory", str, where)
    fmt = _req(data, "format", dict, where)
    kind = _req(fmt, "kind", str, f"{where}: format")
    if kind not in FORMATS:
        raise KGCError(f"{where}: format.kind must be one of {', '.join(FORMATS)}, got {kind!r}")
    delimiter = fmt.get("delimiter", "\t")
    if not isinstance(delimiter, str) or not delimiter:
        raise KGCError(f"{where}: format.delimiter must be a non-empty string")
    files = []
    for i, f in enumerate(_req(data, "files", list, where)):
        fw = f"{where}: files[{i}]"
        if not isinstance(f, dict):
            raise KGCError(f"{fw}: expected a mapping with name/url/sha256")
        members = []
        for j, m in enumerate(f.get("members") or []):
            mw = f"{fw}.members[{j}]"
            members.append(
                MemberSpec(
                    name=_req(m, "name", str, mw),
                    sha256=_sha(m["sha256"], f"{mw}.sha256") if "sha256" in m else None,
                    bytes=m.get("bytes"),
                )
            )
        archive = f.get("archive")
        if archive not in (None, "tar.gz", "tgz", "tar"):
            raise KGCError(f"{fw}.archive: unsupported archive format {archive!r} (tar.gz, tgz, tar)")
        alt = f.get("alt_urls") or []
        if not isinstance(alt, list) or not all(isinstance(u, str) for u in alt):
            raise KGCError(f"{fw}.alt_urls: expected a list of URL strings")
        files.append(
            FileSpec(
                name=_req(f, "name", str, fw),
                url=_req(f, "url", str, fw),
                sha256=_sha(_req(f, "sha256", str, fw), f"{fw}.sha256"),
                bytes=f.get("bytes"),
                alt_urls=tuple(alt),
                archive=archive,
                members=tuple(members),
            )
        )
    file_names = {f.name for f in files}
    raw_splits = _req(data, "splits", dict, where)
    splits: dict[str, SplitSpec | None] = {}
    for s in SPLITS:
        if s not in raw_splits:
            raise KGCError(f"{where}: splits.{s} missing (write 'null' if the dataset has no {s} split)")
        sd = raw_splits[s]
        if sd is None:
            if s == "train":
                raise KGCError(f"{where}: splits.train cannot be null")
            splits[s] = None
            continue
        sw = f"{where}: splits.{s}"
        spec = SplitSpec(
            file=_req(sd, "file", str, sw),
            member=sd.get("member"),
            instance_id_column=bool(sd.get("instance_id_column", False)),
        )
        if spec.file not in file_names:
            raise KGCError(f"{sw}.file: {spec.file!r} is not listed under 'files'")
        splits[s] = spec
    unknown = set(raw_splits) - set(SPLITS)
    if unknown:
        raise KGCError(f"{where}: unknown split(s) {sorted(unknown)} (known: {', '.join(SPLITS)})")
    counts = data.get("counts", {}) or {}
    if not isinstance(counts, dict):
        raise KGCError(f"{where}: counts must be a mapping")
    aliases = data.get("aliases", []) or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise KGCError(f"{where}: aliases must be a list of strings")
    return Manifest(
        name=name,
        directory=directory,
        format=kind,
        delimiter=delimiter,
        files=tuple(files),
        splits=splits,
        expected=counts,
        path=path,
        aliases=tuple(aliases),
        title=str(data.get("title", name)),
        license=data.get("license"),
        citation=str(data.get("citation", "")),
        raw=data,
    )


def load_manifest(path: str | os.PathLike) -> Manifest:
    """Read and validate one manifest YAML file."""
    path = Path(path)
    return parse_manifest(read_yaml(path), path)


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def known_datasets() -> list[str]:
    """Registered dataset names (manifest file stems), sorted, plus ``synthetic``."""
    d = datasets_dir()
    names = sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []
    return names + ["synthetic"]


def find_manifest(name: str) -> Manifest | None:
    """The manifest registered under ``name`` or one of its aliases (case-insensitive), else None."""
    d = datasets_dir()
    if not d.is_dir():
        return None
    direct = d / f"{name}.yaml"
    if direct.is_file():
        return load_manifest(direct)
    want = _norm(name)
    for p in sorted(d.glob("*.yaml")):
        if _norm(p.stem) == want:
            return load_manifest(p)
    for p in sorted(d.glob("*.yaml")):
        m = load_manifest(p)
        if want in {_norm(a) for a in m.aliases}:
            return m
    return None


def get_manifest(name: str) -> Manifest:
    """Like :func:`find_manifest` but an unknown name raises a KGCError listing the known ones."""
    m = find_manifest(name)
    if m is None:
        raise KGCError(
            f"unknown dataset {name!r}; known: {', '.join(known_datasets())} "
            "(or a folder with train.txt/valid.txt/test.txt, or a manifest .yaml)"
        )
    return m
