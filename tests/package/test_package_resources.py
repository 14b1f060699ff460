"""Package data: configs, dataset manifests and published results ship inside the wheel and are
found through importlib.resources, never through the working folder."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import kgc
from kgc.resources import config_dir, manifests_dir

ROOT = Path(__file__).resolve().parents[2]


def test_resources_resolve_inside_the_package_to_the_checkout_sources():
    pkg = Path(kgc.__file__).resolve().parent
    assert config_dir().resolve() == (ROOT / "configs").resolve()
    assert manifests_dir().resolve() == (ROOT / "datasets").resolve()
    # read through the package (kgc/resources/...), not through the repository layout
    assert str(config_dir("finetune")).startswith(str(pkg))
    assert (config_dir("finetune") / "default.yaml").is_file()
    with pytest.raises(kgc.KGCError, match="package data missing: configs/nope"):
        config_dir("nope")


def test_every_module_finds_its_files_from_another_working_folder(tmp_path):
    code = ("import kgc.finetune as f, kgc.pretrain as p, kgc.models.config as m, pretrain_tasks.registry as r;"
            "from kgc.data.registry import known_datasets; from kgc.reports.published import load_published;"
            "print(f.CONFIG_DIR.is_dir(), p.CONFIG_DIR.is_dir(), m.preset_names(), r.CONFIG_DIR.is_dir(),"
            " known_datasets(), bool(load_published()))")
    env = {k: v for k, v in os.environ.items() if k != "KGC_DATASETS_DIR"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.startswith("True True ['hybrid', 'hybrid-tiny', 'transformer', 'transformer-tiny'] True [")
    for name in ("fb15k237", "wn18rr", "jf17k", "umls", "nations", "kinships"):
        assert f"'{name}'" in out.stdout
    assert out.stdout.rstrip().endswith("True")


def test_wheel_ships_every_config_manifest_and_published_file(tmp_path):
    """The built wheel holds a copy of every file under configs/ and datasets/ (the symlinked package
    data), published.yaml, and the ``kgc`` console script."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True, text=True)
    (wheel,) = tmp_path.glob("kgc-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = [p for top in ("configs", "datasets") for p in (ROOT / top).rglob("*.yaml")]
    assert len(sources) > 20
    missing = [str(p.relative_to(ROOT)) for p in sources
               if f"kgc/resources/{p.relative_to(ROOT).as_posix()}" not in names]
    assert missing == []
    assert "kgc/reports/published.yaml" in names
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "kgc = kgc.__main__:main" in text
