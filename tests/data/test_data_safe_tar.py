"""Safe archive reading: malicious members are refused before anything is read."""

from __future__ import annotations

import io
import tarfile

import pytest

from kgc import KGCError
from kgc.data.download import read_tar_members

from data_helpers import make_tar_gz


def _tar(add) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        ok = tarfile.TarInfo("train.txt")
        ok.size = 6
        tar.addfile(ok, io.BytesIO(b"a\tr\tb\n"))
        add(tar)
    return buf.getvalue()


def _file(name: str):
    def add(tar):
        info = tarfile.TarInfo(name)
        info.size = 3
        tar.addfile(info, io.BytesIO(b"x\ty"[:3]))
    return add


def _link(name: str, target: str, kind: bytes):
    def add(tar):
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = target
        tar.addfile(info)
    return add


def _device(name: str):
    def add(tar):
        info = tarfile.TarInfo(name)
        info.type = tarfile.CHRTYPE
        info.devmajor, info.devminor = 1, 3
        tar.addfile(info)
    return add


@pytest.mark.parametrize(
    "add, reason",
    [
        (_file("/etc/evil.txt"), "absolute path"),
        (_file("../evil.txt"), "escapes the archive"),
        (_file("data/../../evil.txt"), "escapes the archive"),
        (_link("valid.txt", "/etc/passwd", tarfile.SYMTYPE), "link to '/etc/passwd'"),
        (_link("test.txt", "train.txt", tarfile.LNKTYPE), "link to 'train.txt'"),
        (_device("null"), "device, FIFO or special file"),
    ],
)
def test_unsafe_member_rejects_archive(add, reason: str) -> None:
    data = _tar(add)
    with pytest.raises(KGCError, match="refusing unsafe archive member") as exc:
        read_tar_members(data, "evil.tar.gz", ["train.txt"])  # even though the wanted member is fine
    assert reason in str(exc.value) and str(exc.value).startswith("evil.tar.gz: ")


def test_safe_archive_reads_members_and_reports_missing() -> None:
    data = make_tar_gz({"train.txt": b"a\tr\tb\n", "./valid.txt": b"b\tr\tc\n"})
    got = read_tar_members(data, "ok.tar.gz")
    assert got == {"train.txt": b"a\tr\tb\n", "valid.txt": b"b\tr\tc\n"}
    with pytest.raises(KGCError, match=r"ok.tar.gz: archive has no member 'test.txt' \(members: train.txt, valid.txt\)"):
        read_tar_members(data, "ok.tar.gz", ["test.txt"])


def test_garbage_is_a_corrupt_archive() -> None:
    with pytest.raises(KGCError, match="x.tar.gz: truncated or corrupt archive"):
        read_tar_members(b"\x1f\x8b\x08\x00garbage" * 10, "x.tar.gz")
