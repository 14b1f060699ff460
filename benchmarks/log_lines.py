"""How a command's log reads when stdout is not a terminal: lines, bytes, longest line, carriage
returns, and the longest gap between two lines (issue 17: no line over 300 characters, a line at
least every 30 s).

    python benchmarks/log_lines.py --log /tmp/log.txt -- .venv/bin/python -m kgc.pretrain --signals all

The command's stdout and stderr go through a pipe (so it sees no terminal) into ``--log``; each
line's arrival time is taken as it comes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--log", required=True, help="where the command's output goes")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = p.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        p.error("give the command after --")
    t0 = time.monotonic()
    stamps = [0.0]
    with open(args.log, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for line in proc.stdout:
            log.write(line)
            log.flush()
            stamps.append(time.monotonic() - t0)
        rc = proc.wait()
    stamps.append(time.monotonic() - t0)
    data = open(args.log, "rb").read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    report = {"rc": rc, "lines": len(lines), "bytes": len(data), "longest_line": max(map(len, lines), default=0),
              "carriage_returns": data.count(b"\r"),
              "longest_gap_s": round(max(b - a for a, b in zip(stamps, stamps[1:])), 1),
              "wall_s": round(stamps[-1], 1)}
    print(json.dumps(report))
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
