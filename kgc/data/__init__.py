"""Knowledge-graph datasets: registry, verified download, parsing, cache, custom folders, synthetic KG.

Entry point: :func:`load_dataset` (see :mod:`kgc.data.load`; the object is :mod:`kgc.data.dataset`); CLI:
``python -m kgc.data stats NAME_OR_PATH [--json]``, ``python -m kgc.data download NAME|--all``,
``python -m kgc.data list``.

Policies (also in the module docstrings):

- **Manifests** are ``<repo>/datasets/<name>.yaml`` (located relative to this
  package, ``KGC_DATASETS_DIR`` overrides); a path to any ``.yaml`` laid out the
  same way loads too.
- **Sources**: ``KGC_DATA_MIRROR`` (``<mirror>/<Directory>/<file>``) replaces the
  network; otherwise files are downloaded once into ``KGC_HOME/downloads``.
  Every file (and archive member) is sha256-verified before parsing.
- **Cache**: ``KGC_HOME/datasets/<name>/<fingerprint>/{arrays.npz,meta.json}``,
  written to a temp folder and renamed; a registered dataset's cache hit needs
  no source file at all.
- **Ids**: sorted raw names over all splits; raw ids are strings.
- **Unseen entities**: entities that occur only in valid/test are kept (ranking
  candidates without train edges) and counted by ``stats``.
- **No validation split** (``jf17k-sir``): valid is an empty ``(0, 1 + A)``
  tensor, so counts equal the published ones; ``KGDataset.with_valid_from_train``
  gives a seeded hold-out when a run needs one.
- **JF17K test files**: the leading instance-id column is dropped.
"""

from kgc.data.dataset import KGDataset
from kgc.data.load import load_dataset
from kgc.data.registry import known_datasets

__all__ = ["KGDataset", "load_dataset", "known_datasets"]
