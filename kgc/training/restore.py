"""Rebuild a model and its vocabulary from a kgc checkpoint (safe load, clear errors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kgc import KGCError
from kgc.config import from_dict
from kgc.models.config import ModelConfig
from kgc.training.checkpoint import load_checkpoint_file
from kgc.vocab import Vocabulary


def load_model(checkpoint: str | Path, map_location: str = "cpu"):
    """-> ``(model in eval mode, vocab, kgc metadata dict)`` from a pretraining or fine-tuning checkpoint."""
    from kgc.models import build_model

    ckpt = load_checkpoint_file(checkpoint, map_location=map_location)
    meta: dict[str, Any] = ckpt["kgc"]
    try:
        vocab = Vocabulary(**meta["vocab"])
        cfg = from_dict(ModelConfig, meta["model"], where=f"{checkpoint} model config")
    except (KeyError, TypeError) as exc:
        raise KGCError(f"{checkpoint}: checkpoint metadata incomplete ({exc})") from None
    model = build_model(cfg, len(vocab), vocab.num_entities, vocab.entity_offset)
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise KGCError(f"{checkpoint}: weights do not fit the model config ({str(exc).splitlines()[0]})") from None
    model.eval()
    meta = dict(meta)
    meta["global_step"] = int(ckpt.get("global_step", 0))
    return model, vocab, meta


def dataset_for(vocab: Vocabulary, dataset=None):
    """Load ``dataset`` (default: the checkpoint's own) and check it matches the vocabulary."""
    from kgc.data import load_dataset

    ds = load_dataset(dataset if dataset is not None else vocab.dataset)
    if ds.fingerprint != vocab.fingerprint or ds.name != vocab.dataset:
        raise KGCError(
            f"the checkpoint was trained on {vocab.dataset!r} (fingerprint {vocab.fingerprint[:12]}), "
            f"not {ds.name!r} ({ds.fingerprint[:12]})"
        )
    return ds
