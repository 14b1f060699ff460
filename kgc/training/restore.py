"""Rebuild a model and its vocabulary from a kgc checkpoint (safe load, clear errors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kgc.errors import KGCError
from kgc.config import from_dict
from kgc.models.config import ModelConfig
from kgc.training.checkpoint import check_vocab_fits, load_checkpoint_file, strip_model_prefix
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
    check_vocab_fits(ckpt["state_dict"], vocab, what=f"checkpoint {checkpoint}")
    model = build_model(cfg, len(vocab), vocab.num_entities, vocab.entity_offset)
    state = strip_model_prefix(ckpt["state_dict"])
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise KGCError(f"{checkpoint}: weights do not fit the model config ({str(exc).splitlines()[0]})") from None
    model.eval()
    meta = dict(meta)
    meta["global_step"] = int(ckpt.get("global_step", 0))
    return model, vocab, meta


def dataset_for(vocab: Vocabulary, dataset=None, what: str = "the checkpoint"):
    """Load ``dataset`` (default: the checkpoint's own) and check it matches the vocabulary.

    The dataset must be the one the checkpoint was trained on (same fingerprint), and the
    vocabulary's entities, relations, labels and roles must be that dataset's
    (:class:`kgc.vocab.VocabularyMismatch` names what differs). The task list, hops and buckets
    are the checkpoint's own: it evaluates and predicts with its own token layout."""
    from kgc.data import load_dataset
    from kgc.vocab import VocabularyMismatch

    ds = load_dataset(dataset if dataset is not None else vocab.dataset)
    if ds.fingerprint != vocab.fingerprint or ds.name != vocab.dataset:
        raise VocabularyMismatch(
            f"the checkpoint was trained on {vocab.dataset!r} (fingerprint {vocab.fingerprint[:12]}), "
            f"not {ds.name!r} ({ds.fingerprint[:12]})"
        )
    Vocabulary.build(ds, tasks=vocab.tasks, max_hops=vocab.max_hops, num_buckets=vocab.num_buckets).check_compatible(
        vocab, what=what)
    return ds
