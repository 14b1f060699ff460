"""kgc.training.module: the task modules on the shared base, with injected losses and typed batches."""

from __future__ import annotations

import inspect

import torch

from kgc.models import build_model, load_model_config
from pretrain_tasks.batching import SignalBatch
from kgc.training.config import OptimConfig
from kgc.training.losses import KvsAllLoss, OneVsAllLoss, SignalLoss
from kgc.training.module import KGCModule, LinkPredictionModule, PretrainModule
from kgc.vocab import Vocabulary
from pretrain_tasks import collate

from lp_fakes import FakeLPModel, lp_batch


def _vocab() -> Vocabulary:
    return Vocabulary(dataset="t", fingerprint="f", entity_names=[f"e{i}" for i in range(30)],
                      label_names=[f"l{i}" for i in range(8)], num_relations=4, max_arity=2)


def test_lp_module_never_reads_targets_the_loss_object_decides():
    # no targets/label_smoothing knob on the module: the same class trains 1vsAll and KvsAll
    params = inspect.signature(LinkPredictionModule.__init__).parameters
    assert "targets" not in params and "label_smoothing" not in params and "loss" in params
    vocab, model = _vocab(), FakeLPModel()
    single = LinkPredictionModule(model, vocab, OptimConfig(), 10, loss=OneVsAllLoss(0.1))
    multi = LinkPredictionModule(model, vocab, OptimConfig(), 10, loss=KvsAllLoss(0.1))
    assert isinstance(single, KGCModule) and type(single) is type(multi)
    # every query with exactly one train answer: KvsAll == 1vsAll on the same batch
    one = lp_batch([3, 0, 6, 2], [0, 1, 2, 3, 4], [3, 0, 6, 2])
    torch.testing.assert_close(single.lp_loss(one), multi.lp_loss(one))
    # several answers: each module computes exactly its loss object
    many = lp_batch([1, 2, 0, 3], [0, 2, 3, 6, 7], [1, 4, 2, 0, 5, 6, 3])
    torch.testing.assert_close(multi.lp_loss(many), KvsAllLoss(0.1)(model, many))
    torch.testing.assert_close(single.lp_loss(many), OneVsAllLoss(0.1)(model, many))
    assert not torch.allclose(single.lp_loss(many), multi.lp_loss(many))


def test_signal_batch_survives_transfer_batch_to_device():
    torch.manual_seed(0)
    vocab = _vocab()
    model = build_model(load_model_config("transformer-tiny", []), len(vocab), vocab.num_entities, vocab.entity_offset)
    module = PretrainModule(model, vocab, OptimConfig(), 10)
    assert isinstance(module.loss, SignalLoss)
    g = torch.Generator().manual_seed(1)
    batch = collate([(torch.randint(1, len(vocab), (n,), generator=g), 2, 1) for n in (5, 8)])
    assert isinstance(batch, SignalBatch) and len(batch) == 2
    for device in (torch.device("cpu"), torch.device("meta")):  # meta: a real move, without an accelerator
        moved = module.transfer_batch_to_device(batch, device, 0)
        assert isinstance(moved, SignalBatch)
        for name in ("tokens", "prefix_len", "labels", "task"):
            t = getattr(moved, name)
            assert t.device.type == device.type and t.shape == getattr(batch, name).shape
    moved = module.transfer_batch_to_device(batch, torch.device("cpu"), 0)
    assert all(torch.equal(getattr(moved, n), getattr(batch, n)) for n in ("tokens", "prefix_len", "labels", "task"))
    loss, _ = module.signal_loss(moved)
    torch.testing.assert_close(loss, SignalLoss()(model, batch)[0])
