"""Render the leaderboard HTML in headless Chromium and save a PNG screenshot.

Usage::

    python benchmarks/screenshot_leaderboard.py [--html reports/leaderboard.html] [--out reports/leaderboard_page.png]
        [--width 1600] [--height 1400] [--chromium chromium]

Needs Debian's ``chromium`` package (``apt-get install -y chromium``); the test suite does not. The page
is opened from a ``file://`` URL with networking disabled, so the screenshot also shows that the page is
self-contained. Exits 2 with ``error: ...`` when Chromium or the page is missing or no PNG was written.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium(explicit: str | None) -> str:
    for name in ([explicit] if explicit else CANDIDATES):
        path = shutil.which(name) if name else None
        if path:
            return path
    raise SystemExit("error: Chromium not found; install it with `apt-get install -y chromium` or pass --chromium")


def screenshot(html: Path, out: Path, chromium: str, width: int, height: int, timeout: float = 120) -> Path:
    """Screenshot ``html`` into ``out`` (written via a temp file + rename); returns ``out``."""
    if not html.is_file():
        raise SystemExit(f"error: {html}: page not found (run `python -m kgc.leaderboard` first)")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".png", dir=out.parent)
    os.close(fd)
    os.unlink(tmp)
    with tempfile.TemporaryDirectory(prefix="kgc-chromium-") as profile:
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--no-first-run", "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={profile}",
               f"--window-size={width},{height}", f"--screenshot={tmp}", html.resolve().as_uri()]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0 or not Path(tmp).is_file() or Path(tmp).stat().st_size == 0:
        Path(tmp).unlink(missing_ok=True)
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SystemExit(f"error: chromium exited with {res.returncode} and wrote no screenshot ({tail[0]})")
    with open(tmp, "rb") as fh:
        if fh.read(8) != b"\x89PNG\r\n\x1a\n":
            raise SystemExit(f"error: {tmp}: chromium's output is not a PNG")
    os.replace(tmp, out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--html", default="reports/leaderboard.html")
    p.add_argument("--out", default=None, help="PNG path (default: next to the page, leaderboard_page.png)")
    p.add_argument("--width", type=int, default=1600)
    p.add_argument("--height", type=int, default=1400)
    p.add_argument("--chromium", help="browser executable (default: the first of chromium, chromium-browser, ...)")
    args = p.parse_args(argv)
    html = Path(args.html)
    out = Path(args.out) if args.out else html.with_name("leaderboard_page.png")
    path = screenshot(html, out, find_chromium(args.chromium), args.width, args.height)
    print(f"screenshot: {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            sys.exit(2)
        raise
