"""The ``kgc`` console command dispatches to the ``python -m kgc.<x>`` CLIs with the same flags and help."""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys

import pytest

import kgc
from kgc.__main__ import SUBCOMMANDS, main


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True)


def test_version_and_console_script_entry_point():
    out = _run("-m", "kgc", "--version")
    assert out.returncode == 0 and out.stdout.strip() == f"kgc {kgc.__version__}"
    (ep,) = [e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == "kgc"]
    assert ep.value == "kgc.__main__:main"


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_subcommand_has_a_main_and_the_same_help(name):
    module = importlib.import_module(SUBCOMMANDS[name][0])
    assert callable(module.main)
    via_kgc = _run("-m", "kgc", name, "--help")
    direct = _run("-m", SUBCOMMANDS[name][0].removesuffix(".__main__"), "--help")
    assert via_kgc.returncode == direct.returncode == 0
    assert via_kgc.stdout == direct.stdout
    assert via_kgc.stdout.startswith(f"usage: kgc {name}")


def test_dispatch_runs_the_subcommand_and_maps_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["data", "list"])
    assert exc.value.code == 0
    assert "umls" in capsys.readouterr().out.split()
    with pytest.raises(SystemExit) as exc:
        main(["data", "stats", "no-such-dataset"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no-such-dataset" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exc:
        main(["bogus"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2


def test_a_closed_pipe_ends_the_command_without_a_traceback(mirror):
    """``kgc data stats umls | head -1``: the reader quits early; kgc exits 1 quietly (no BrokenPipeError)."""
    import os
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "kgc", "data", "stats", "umls"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=dict(os.environ))
    proc.stdout.close()  # the reader is gone before kgc writes
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 1
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
