"""Getting dataset files: local mirror or network download, sha256 verification, safe archive reading.

Flow for one manifest file (:class:`kgc.data.registry.FileSpec`):

1. If ``KGC_DATA_MIRROR`` is set, the file is read from
   ``<mirror>/<directory>/<name>`` (the layout of ``../shared/datasets``); the
   network is never used.
2. Otherwise it is downloaded once into ``kgc_home()/downloads/<directory>/<name>``
   with ``urllib`` (timeout, progress bar via tqdm, the canonical URL first and
   then the alternates).  The bytes stream into a temp file in that folder and
   are hashed on the way; only a file whose sha256 matches is renamed into
   place, so an interrupted or corrupted download never leaves a file that
   looks valid.
3. Either way the bytes are verified against the manifest's sha256 before they
   are used (a mismatch is a one-line :class:`kgc.KGCError`).

Archives (``tar.gz``) are read in memory with :func:`read_tar_members`, which
refuses the whole archive if any member is unsafe (absolute path, ``..``,
symlink, hard link, device/FIFO), and turns a truncated or corrupt archive into
a one-line error.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path, PurePosixPath

from kgc.errors import KGCError
from kgc.data.registry import FileSpec, Manifest
from kgc.utils.io import kgc_home

DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK = 1 << 16


def mirror_root() -> Path | None:
    """The ``KGC_DATA_MIRROR`` folder, or None when unset/empty."""
    env = os.environ.get("KGC_DATA_MIRROR", "").strip()
    return Path(env).expanduser() if env else None


def download_dir(manifest: Manifest) -> Path:
    return kgc_home() / "downloads" / manifest.directory


def verify_bytes(data: bytes, expected_sha256: str, source: str) -> None:
    """Raise a KGCError if ``sha256(data) != expected_sha256``."""
    got = hashlib.sha256(data).hexdigest()
    if got != expected_sha256:
        raise KGCError(
            f"{source}: sha256 mismatch (expected {expected_sha256}, got {got}); "
            "the file is corrupt or not the published version - delete it and download again"
        )


def fetch_url(urls: tuple[str, ...] | list[str], dest: Path, expected_sha256: str,
              timeout: float = DOWNLOAD_TIMEOUT_S, progress: bool | None = None) -> Path:
    """Download the first working URL of ``urls`` to ``dest`` atomically, verifying sha256.

    The body streams into ``.<name>.*.part`` next to ``dest`` while being hashed;
    on a checksum mismatch or any error the temp file is removed and ``dest``
    is left untouched.  A mismatch is not retried with another URL (the bytes
    arrived intact but are not the published file).
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    for url in urls:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        try:
            h = hashlib.sha256()
            req = urllib.request.Request(url, headers={"User-Agent": "kgc-data/1"})
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(req, timeout=timeout) as resp:
                total = resp.headers.get("Content-Length")
                with tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                          desc=dest.name, disable=(None if progress is None else not progress),
                          leave=False) as bar:
                    while True:
                        block = resp.read(_CHUNK)
                        if not block:
                            break
                        out.write(block)
                        h.update(block)
                        bar.update(len(block))
                out.flush()
                os.fsync(out.fileno())
            got = h.hexdigest()
            if got != expected_sha256:
                raise KGCError(
                    f"{url}: sha256 mismatch (expected {expected_sha256}, got {got}); download discarded"
                )
            os.replace(tmp, dest)
            return dest
        except KGCError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        except (urllib.error.URLError, OSError, ValueError) as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            errors.append(f"{url} ({getattr(exc, 'reason', exc)})")
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    raise KGCError(
        f"could not download {dest.name}: tried {'; '.join(errors)}; "
        "set KGC_DATA_MIRROR to a local copy laid out <mirror>/<Directory>/<file>"
    )


def file_bytes(manifest: Manifest, spec: FileSpec, progress: bool | None = None) -> bytes:
    """The verified bytes of one manifest file (mirror, else download cache, else network)."""
    mirror = mirror_root()
    if mirror is not None:
        path = mirror / manifest.directory / spec.name
        if not path.is_file():
            raise KGCError(
                f"{path}: not found in KGC_DATA_MIRROR={mirror} "
                f"(expected layout <mirror>/{manifest.directory}/{spec.name})"
            )
    else:
        path = download_dir(manifest) / spec.name
        if not path.is_file():
            fetch_url(spec.urls, path, spec.sha256, progress=progress)
    data = path.read_bytes()
    verify_bytes(data, spec.sha256, str(path))
    return data


def ensure_files(manifest: Manifest, progress: bool | None = None) -> list[tuple[str, str]]:
    """Fetch (or locate in the mirror) and verify every file of ``manifest``.

    Returns ``[(path, sha256), ...]``; archives are also opened and checked
    for unsafe or corrupt members.
    """
    out = []
    mirror = mirror_root()
    for spec in manifest.files:
        data = file_bytes(manifest, spec, progress=progress)
        where = (mirror / manifest.directory / spec.name) if mirror else download_dir(manifest) / spec.name
        if spec.archive:
            names = [m.name for m in spec.members]
            members = read_tar_members(data, str(where), names or None)
            for m in spec.members:
                if m.sha256:
                    verify_bytes(members[m.name], m.sha256, f"{where}:{m.name}")
        out.append((str(where), spec.sha256))
    return out


def _check_member(member: tarfile.TarInfo, source: str) -> None:
    name = member.name
    p = PurePosixPath(name.replace("\\", "/"))
    if name.startswith(("/", "\\")) or p.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise KGCError(f"{source}: refusing unsafe archive member {name!r} (absolute path)")
    if ".." in p.parts:
        raise KGCError(f"{source}: refusing unsafe archive member {name!r} (path escapes the archive via '..')")
    if member.issym() or member.islnk():
        raise KGCError(f"{source}: refusing unsafe archive member {name!r} (link to {member.linkname!r})")
    if member.isdev() or not (member.isfile() or member.isdir()):
        raise KGCError(f"{source}: refusing unsafe archive member {name!r} (device, FIFO or special file)")


def read_tar_members(data: bytes, source: str, names: list[str] | None = None) -> dict[str, bytes]:
    """Safely read regular-file members of a (gzip-compressed) tar archive held in memory.

    Every member is checked first (see module docstring); one unsafe member
    rejects the archive.  ``names`` selects members (a missing one is an
    error); ``None`` reads all regular files.  Member names are normalised by
    dropping a leading ``./``.

    Returns ``{member name: bytes}``.
    """
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            members = tar.getmembers()  # reads the whole index: truncation shows here
            for m in members:
                _check_member(m, source)
            by_name = {m.name[2:] if m.name.startswith("./") else m.name: m for m in members if m.isfile()}
            wanted = list(by_name) if names is None else names
            out: dict[str, bytes] = {}
            for n in wanted:
                if n not in by_name:
                    raise KGCError(f"{source}: archive has no member {n!r} (members: {', '.join(sorted(by_name))})")
                fh = tar.extractfile(by_name[n])
                assert fh is not None
                blob = fh.read()
                if len(blob) != by_name[n].size:
                    raise KGCError(f"{source}: truncated archive (member {n!r} is short)")
                out[n] = blob
            return out
    except KGCError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise KGCError(f"{source}: truncated or corrupt archive ({type(exc).__name__}: {exc})") from None
