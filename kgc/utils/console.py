"""What kgc tells the user on stdout, behind one switch (``--quiet``).

Every progress message of the CLIs goes through :func:`say` (``[kgc] <message>``), so that
``--quiet`` (:func:`set_quiet`) leaves only what :func:`result` prints: the final metrics.
``sys.stdout`` is looked up at each call, so pytest's ``capsys`` and ``contextlib.redirect_stdout``
see the messages.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

_quiet = False


def set_quiet(quiet: bool) -> None:
    """Silence (``True``) or restore (``False``) :func:`say` for this process."""
    global _quiet
    _quiet = bool(quiet)


@contextlib.contextmanager
def quiet_if(quiet: bool) -> Iterator[None]:
    """Within the block, :func:`say` is silenced when ``quiet`` (the previous state comes back after)."""
    before = _quiet
    set_quiet(before or quiet)
    try:
        yield
    finally:
        set_quiet(before)


def is_quiet() -> bool:
    return _quiet


def say(message: str) -> None:
    """A progress message (``[kgc] message``); nothing under ``--quiet``."""
    if not _quiet:
        print(f"[kgc] {message}", file=sys.stdout, flush=True)


def result(message: str) -> None:
    """A final result line (``[kgc] message``); printed even under ``--quiet``."""
    print(f"[kgc] {message}", file=sys.stdout, flush=True)
