"""kgc's package data: configs, dataset manifests (read with :mod:`importlib.resources`).

The repository keeps the design card's top-level ``configs/`` and ``datasets/`` as the source;
``kgc/resources/configs`` and ``kgc/resources/datasets`` are symlinks to them, so an editable
install reads the checkout's files and a wheel (``pip install .``, ``python -m build``) ships
copies as package data. Nothing here depends on where the package was installed from, or on
the working folder.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from kgc.errors import KGCError

__all__ = ["config_dir", "manifests_dir"]


def _resource(*parts: str) -> Path:
    node = files("kgc.resources").joinpath(*parts)
    path = Path(str(node))
    if not path.is_dir():
        raise KGCError(f"kgc package data missing: {'/'.join(parts)} is not in {files('kgc.resources')} "
                       "(a broken install? reinstall kgc)")
    return path


def config_dir(kind: str | None = None) -> Path:
    """``configs/`` (or ``configs/<kind>``: finetune, pretrain, model, signals, hpo) as shipped with kgc."""
    return _resource("configs") if kind is None else _resource("configs", kind)


def manifests_dir() -> Path:
    """``datasets/``: the ``<name>.yaml`` dataset manifests shipped with kgc."""
    return _resource("datasets")
