"""The ``kgc signals`` CLI (kgc/signals.py)."""

from __future__ import annotations

import pytest


def test_cli_show(capsys):
    from kgc.signals import main

    assert main(["show", "--signal", "shortest_path", "-n", "3"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("# synthetic: signal shortest_path")
    assert len(out) == 4 and all(line.startswith("[TASK:shortest_path] e") and "[SEP]" in line for line in out[1:])
    assert main(["show", "--signal", "lcc", "-n", "2", "--set", "clustering_buckets=uniform"]) == 0
    assert "[DEG_" in capsys.readouterr().out


@pytest.mark.parametrize("argv,msg", [
    (["show", "--signal", "nope"], "unknown signal 'nope'; valid signals: random_walk, shortest_path, khop"),
    (["show", "--signal", "khop", "--set", "kk=2"], "unknown key 'kk'"),
    (["show", "--signal", "khop", "--dataset", "no-such-dataset"], "error: "),
    (["show", "--signal", "khop", "-n", "0"], "-n must be >= 1"),
])
def test_cli_errors(capsys, argv, msg):
    from kgc.signals import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and msg in err and len(err.strip().splitlines()) == 1
