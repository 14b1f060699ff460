"""Small, safe file helpers shared by every part of kgc.

Every file kgc writes goes through :func:`atomic_write` (temp file in the same
folder, fsync, ``os.replace``), so an interrupted process never leaves a file
that looks complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterator

import yaml

from kgc.errors import KGCError


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file next to ``path``; on clean exit fsync it and rename it over ``path``.

    On an exception the temp file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, busy: Callable[[str], KGCError]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing, the holder's pid written in it) for the
    block. The kernel releases it when the process dies, even by SIGKILL, so a lock file left behind never
    blocks anyone. If another process holds it, raise ``busy(holder_pid)`` at once (never wait)."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            raise busy(fh.read().strip() or "?") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield
    finally:
        fh.close()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    with atomic_write(path, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=False, default=str)
        fh.write("\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise KGCError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise KGCError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None


def read_yaml(path: str | os.PathLike) -> Any:
    """Read YAML with ``yaml.safe_load`` (never the unsafe loader)."""
    path = Path(path)
    try:
        with open(path) as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise KGCError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise KGCError(f"{path}:{where} invalid YAML: {getattr(exc, 'problem', exc)}") from None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def kgc_home() -> Path:
    """Root of kgc's cache (``KGC_HOME``, default ``~/.cache/kgc``)."""
    return Path(os.environ.get("KGC_HOME", Path.home() / ".cache" / "kgc")).expanduser()
