"""Each bad input is a one-line KGCError naming the place at fault, and leaves nothing in the cache."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from kgc import KGCError
from kgc.data import load_dataset
from kgc.data.download import fetch_url

from data_helpers import TEST, TRAIN, VALID, files_under, make_tar_gz, write_archive_manifest, write_split_files


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("KGC_HOME", str(h))
    return h


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_checksum_mismatch_in_mirror(tmp_path: Path, home: Path, mirror: Path, monkeypatch) -> None:
    bad = tmp_path / "mirror" / "UMLS"
    bad.mkdir(parents=True)
    for f in ("train.txt", "valid.txt", "test.txt"):
        shutil.copy(mirror / "UMLS" / f, bad / f)
    with open(bad / "train.txt", "a") as fh:
        fh.write("extra\tisa\tfact\n")
    monkeypatch.setenv("KGC_DATA_MIRROR", str(tmp_path / "mirror"))
    with pytest.raises(KGCError) as exc:
        load_dataset("umls")
    msg = _one_line(exc)
    assert "train.txt" in msg and "sha256 mismatch" in msg
    assert files_under(home) == []


def test_missing_mirror_file(tmp_path: Path, home: Path, monkeypatch) -> None:
    (tmp_path / "mirror").mkdir()
    monkeypatch.setenv("KGC_DATA_MIRROR", str(tmp_path / "mirror"))
    with pytest.raises(KGCError, match=r"Nations/train.txt: not found in KGC_DATA_MIRROR"):
        load_dataset("nations")
    assert files_under(home) == []


def test_truncated_archive(tmp_path: Path, home: Path, monkeypatch) -> None:
    big = "".join(f"e{i}\tr{i % 7}\te{(i * 7919) % 5000}\n" for i in range(20000)).encode()
    full = make_tar_gz({"train.txt": big, "valid.txt": VALID.encode(), "test.txt": TEST.encode()})
    truncated = full[: len(full) // 2]
    manifest = write_archive_manifest(tmp_path, truncated)  # sha256 of the truncated bytes: verify passes
    monkeypatch.setenv("KGC_DATA_MIRROR", str(tmp_path / "mirror"))
    with pytest.raises(KGCError) as exc:
        load_dataset(str(manifest))
    msg = _one_line(exc)
    assert "toy.tar.gz" in msg and "truncated or corrupt archive" in msg
    assert files_under(home) == []
    # the intact archive loads through the same manifest path (and is then cached)
    write_archive_manifest(tmp_path, full)
    ds = load_dataset(str(manifest))
    assert len(ds.splits["train"]) == 20000
    assert sorted(p.name for p in files_under(home)) == ["arrays.npz", "meta.json"]


def test_unknown_dataset_lists_known_names(home: Path) -> None:
    with pytest.raises(KGCError) as exc:
        load_dataset("fb15k-238")
    msg = _one_line(exc)
    assert "unknown dataset 'fb15k-238'" in msg
    for name in ("fb15k237", "wn18rr", "jf17k", "jf17k-sir", "umls", "kinships", "nations", "synthetic"):
        assert name in msg


def test_custom_folder_missing_split(tmp_path: Path, home: Path) -> None:
    folder = write_split_files(tmp_path / "kg", TRAIN, VALID, TEST)
    (folder / "test.txt").unlink()
    with pytest.raises(KGCError, match=r"kg: missing test.txt \(a custom dataset needs train.txt, valid.txt, test.txt\)"):
        load_dataset(str(folder))
    assert files_under(home) == []


def test_custom_folder_empty_split(tmp_path: Path, home: Path) -> None:
    folder = write_split_files(tmp_path / "kg", TRAIN, "\n\r\n", TEST)
    with pytest.raises(KGCError, match=r"valid.txt: split 'valid' is empty"):
        load_dataset(str(folder))
    assert files_under(home) == []


def test_malformed_line_error_warn_skip(tmp_path: Path, home: Path) -> None:
    folder = write_split_files(tmp_path / "kg", "a\tr1\tb\nb\tr2\nc\tr1\ta\n", VALID, TEST)
    with pytest.raises(KGCError) as exc:
        load_dataset(str(folder))
    assert _one_line(exc) == f"{folder / 'train.txt'}:2: expected 3 fields, got 2"
    assert files_under(home) == []
    with pytest.warns(UserWarning, match=r"train.txt: skipped 1 malformed line\(s\): .*train.txt:2: expected 3 fields, got 2"):
        ds = load_dataset(str(folder), on_bad_lines="warn")
    assert len(ds.splits["train"]) == 2
    ds2 = load_dataset(str(folder), on_bad_lines="skip")
    assert len(ds2.splits["train"]) == 2
    with pytest.raises(KGCError, match="on_bad_lines must be one of error, warn, skip"):
        load_dataset(str(folder), on_bad_lines="ignore")


def test_empty_field_is_rejected(tmp_path: Path, home: Path) -> None:
    folder = write_split_files(tmp_path / "kg", TRAIN, "a\t\tc\n", TEST)
    with pytest.raises(KGCError) as exc:
        load_dataset(str(folder))
    assert _one_line(exc) == f"{folder / 'valid.txt'}:1: field 2 is empty"
    assert files_under(home) == []


def test_hyperedge_line_too_short(tmp_path: Path, home: Path) -> None:
    folder = write_split_files(tmp_path / "kg", "r\ta\tb\tc\nr\ta\n", "r\ta\tb\n", "r\tb\tc\n")
    with pytest.raises(KGCError, match=r"train.txt:2: expected at least 3 fields \(relation and 2\+ entities\), got 2"):
        load_dataset(str(folder))


class _Handler(http.server.BaseHTTPRequestHandler):
    payload = b""

    def do_GET(self):  # noqa: N802
        if self.path != "/file.txt":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    _Handler.payload = TRAIN.encode()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_download_verifies_and_writes_atomically(tmp_path: Path, server: str) -> None:
    good = hashlib.sha256(TRAIN.encode()).hexdigest()
    dest = tmp_path / "dl" / "train.txt"
    # first URL 404s, the alternate works
    fetch_url([f"{server}/missing.txt", f"{server}/file.txt"], dest, good, timeout=10, progress=False)
    assert dest.read_bytes() == TRAIN.encode()
    assert files_under(tmp_path / "dl") == [dest]


def test_download_checksum_mismatch_leaves_nothing(tmp_path: Path, server: str) -> None:
    dest = tmp_path / "dl" / "train.txt"
    with pytest.raises(KGCError) as exc:
        fetch_url([f"{server}/file.txt"], dest, "0" * 64, timeout=10, progress=False)
    assert "sha256 mismatch" in _one_line(exc) and "download discarded" in str(exc.value)
    assert files_under(tmp_path / "dl") == []


def test_download_unreachable(tmp_path: Path, server: str) -> None:
    dest = tmp_path / "dl" / "x.txt"
    with pytest.raises(KGCError) as exc:
        fetch_url([f"{server}/nope.txt"], dest, "0" * 64, timeout=10, progress=False)
    msg = _one_line(exc)
    assert msg.startswith("could not download x.txt: tried") and "KGC_DATA_MIRROR" in msg
    assert files_under(tmp_path / "dl") == []


def test_network_path_uses_download_cache(tmp_path: Path, home: Path, server: str, monkeypatch) -> None:
    """Without a mirror, files are downloaded into KGC_HOME/downloads, verified, then parsed."""
    _Handler.payload = make_tar_gz({"train.txt": TRAIN.encode(), "valid.txt": VALID.encode(), "test.txt": TEST.encode()})
    manifest = write_archive_manifest(tmp_path, _Handler.payload)
    text = manifest.read_text().replace("http://127.0.0.1:9/toy.tar.gz", f"{server}/file.txt")
    manifest.write_text(text)
    monkeypatch.delenv("KGC_DATA_MIRROR", raising=False)
    ds = load_dataset(str(manifest))
    assert (home / "downloads" / "Toy" / "toy.tar.gz").read_bytes() == _Handler.payload
    assert ds.num_entities == 4 and len(ds.splits["train"]) == 4
