"""Checkpoint files: atomic writes and safe loads.

Lightning writes every checkpoint through :class:`AtomicCheckpointIO`: the
state is serialised to a temp file in the target folder, fsynced, then renamed
over the target, so a process killed mid-write never leaves a file that looks
complete. Loads always use ``torch.load(..., weights_only=True)``: a checkpoint
carrying pickled code is refused, never executed.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from kgc.errors import KGCError
from kgc.utils.io import atomic_write

CHECKPOINT_FORMAT = 1


def load_checkpoint_file(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a kgc/Lightning checkpoint safely; every failure is a one-line :class:`KGCError`."""
    path = Path(path)
    if not path.is_file():
        raise KGCError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (zipfile.BadZipFile, EOFError, RuntimeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise KGCError(
            f"{path}: truncated or corrupt checkpoint ({msg}); resume from an earlier checkpoint or re-run"
        ) from None
    except Exception as exc:  # pickle.UnpicklingError from weights_only and friends
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise KGCError(
            f"{path}: refused to load: the file holds objects other than tensors and plain data "
            f"(weights_only=True): {msg}"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise KGCError(f"{path}: not a kgc checkpoint (no state_dict)")
    meta = ckpt.get("kgc")
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise KGCError(f"{path}: not a kgc checkpoint (missing or foreign 'kgc' metadata)")
    return ckpt


def strip_model_prefix(state_dict: dict[str, Any]) -> dict[str, Any]:
    """The model's own state from a Lightning module's ``state_dict``: the ``model.`` entries, prefix removed."""
    return {k[len("model."):]: v for k, v in state_dict.items() if k.startswith("model.")}


def check_vocab_fits(state_dict: dict[str, Any], vocab, what: str = "checkpoint") -> None:
    """Raise :class:`kgc.vocab.VocabularyMismatch` when the token embedding of ``state_dict`` (a
    Lightning ``state_dict``, ``model.`` prefix and all) has another number of rows than ``vocab``
    has tokens: the vocabulary stored with the weights is not the one they were trained with."""
    from kgc.vocab import VocabularyMismatch

    emb = state_dict.get("model.tok_emb.weight")
    if emb is not None and getattr(emb, "ndim", 0) >= 1 and int(emb.shape[0]) != len(vocab):
        raise VocabularyMismatch(
            f"{what}: its token embedding has {int(emb.shape[0])} rows but its vocabulary has {len(vocab)} tokens "
            f"(tasks {list(vocab.tasks)}, {vocab.num_labels} labels, {vocab.num_entities} entities): the stored "
            f"vocabulary is not the one the weights were trained with"
        )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning CheckpointIO that writes atomically and loads with ``weights_only=True``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError("storage_options is not supported")
        with atomic_write(path, "wb") as fh:
            torch.save(checkpoint, fh)

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return load_checkpoint_file(path, map_location=map_location or "cpu")

    def remove_checkpoint(self, path) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
