"""Helpers shared by the kgc.data tests (small files in tmp folders)."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import yaml


def write_split_files(folder: Path, train: str, valid: str, test: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"{name}.txt").write_text(text)
    return folder


def files_under(root: Path) -> list[Path]:
    """Every file (any name, including hidden temp files) below ``root``."""
    if not root.exists():
        return []
    return [Path(d) / f for d, _, fs in os.walk(root) for f in fs]


def make_tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_archive_manifest(folder: Path, archive_bytes: bytes, name: str = "toy") -> Path:
    """A manifest .yaml for a tar.gz ``toy.tar.gz`` (in mirror layout ``folder/mirror/Toy/``)."""
    mirror_dir = folder / "mirror" / "Toy"
    mirror_dir.mkdir(parents=True, exist_ok=True)
    (mirror_dir / "toy.tar.gz").write_bytes(archive_bytes)
    manifest = {
        "name": name,
        "directory": "Toy",
        "files": [{
            "name": "toy.tar.gz",
            "url": "http://127.0.0.1:9/toy.tar.gz",
            "sha256": hashlib.sha256(archive_bytes).hexdigest(),
            "archive": "tar.gz",
        }],
        "splits": {s: {"file": "toy.tar.gz", "member": f"{s}.txt"} for s in ("train", "valid", "test")},
        "format": {"kind": "triples", "delimiter": "\t"},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


TRAIN = "a\tr1\tb\nb\tr2\tc\nc\tr1\ta\nd\tr2\ta\n"
VALID = "a\tr2\tc\n"
TEST = "b\tr1\td\n"
