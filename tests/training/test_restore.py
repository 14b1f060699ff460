"""kgc.training.restore (and ``kgc evaluate`` on it): a checkpoint whose stored vocabulary does not fit is
refused with a named error."""

from __future__ import annotations

import pytest

from kgc.evaluate import main as evaluate_main
from kgc.finetune import main as finetune_main
from kgc.training.restore import dataset_for, load_model
from kgc.vocab import Vocabulary, VocabularyMismatch

from training_helpers import tampered_checkpoint


@pytest.fixture(scope="module")
def ft_ckpt(tmp_path_factory):
    from training_helpers import TINY_FINETUNE

    root = tmp_path_factory.mktemp("restore")
    (root / "tiny.yaml").write_text(TINY_FINETUNE)
    out = root / "ft"
    assert finetune_main(["--dataset", "synthetic", "--from-scratch", "--config", str(root / "tiny.yaml"),
                          "--max-steps", "2", "--skip-test", "--out", str(out), "--runs-root", str(root)]) == 0
    return out / "checkpoints" / "last.ckpt"


def test_restore_loads_the_checkpoint_and_its_task_list(ft_ckpt, tmp_path):
    model, vocab, meta = load_model(ft_ckpt)
    assert vocab.tasks[0] == "lp" and meta["kind"] == "finetune"
    dataset_for(vocab)
    old = tampered_checkpoint(ft_ckpt, tmp_path / "old.ckpt", drop_tasks=True)  # saved before the list was stored
    assert load_model(old)[1].to_dict() == vocab.to_dict()


@pytest.mark.parametrize("kind", ["task", "entity"])
def test_restore_and_evaluate_refuse_a_vocabulary_that_does_not_fit_the_weights(ft_ckpt, tmp_path, kind):
    bad = tampered_checkpoint(ft_ckpt, tmp_path / f"{kind}.ckpt", grow_embedding=False,
                              **({"extra_task": "path_rank"} if kind == "task" else {"extra_entity": "extra"}))
    with pytest.raises(VocabularyMismatch, match=r"task\.ckpt|entity\.ckpt") as info:
        load_model(bad)
    assert "token embedding has" in str(info.value) and "rows but its vocabulary has" in str(info.value)
    with pytest.raises(VocabularyMismatch, match="token embedding has"):
        evaluate_main(["--checkpoint", str(bad), "--split", "valid"])


def test_dataset_for_names_a_layout_that_is_not_the_datasets(ft_ckpt):
    _, vocab, _ = load_model(ft_ckpt)
    d = vocab.to_dict()
    more = Vocabulary(**{**d, "entity_names": d["entity_names"] + ["extra"]})
    with pytest.raises(VocabularyMismatch, match=rf"entities differ: {vocab.num_entities + 1} vs {vocab.num_entities}"):
        dataset_for(more)
    with pytest.raises(VocabularyMismatch, match=r"roles \(max_arity\) differ: 3 vs 2"):
        dataset_for(Vocabulary(**{**d, "max_arity": 3}))
    with pytest.raises(VocabularyMismatch, match=r"labels differ: label 0 is 'other' vs"):
        dataset_for(Vocabulary(**{**d, "label_names": ["other"] + d["label_names"][1:]}))
