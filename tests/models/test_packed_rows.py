"""Packed rows in KGCModel.encode (``segments`` / ``prefix_mask``): several sequences side by side in
one row get exactly the hidden states they get encoded alone (Transformer); the hybrid refuses them."""

from __future__ import annotations

import pytest
import torch

from kgc import KGCError
from kgc.models import build_model, load_model_config
from kgc.models.base import attention_mask

V, E, OFF = 60, 30, 25


def make(preset="transformer-tiny", seed=0, **over):
    torch.manual_seed(seed)
    cfg = load_model_config(preset, [f"{k}={v}" for k, v in over.items()])
    return build_model(cfg, V, E, OFF).double().eval()


def random_rows(seed: int, rows: int = 3, width: int = 40):
    """Random sequences (3..14 tokens, prompts 1..n-1) laid side by side, right-padded per row.

    -> tokens, segments, prefix_mask (rows, width) and [(row, start, seq tokens, prefix_len)]."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.zeros(rows, width, dtype=torch.long)
    segments = torch.zeros_like(tokens)
    prefix_mask = torch.zeros(rows, width, dtype=torch.bool)
    placed = []
    for r in range(rows):
        at, k = 0, 0
        while True:
            n = int(torch.randint(3, 15, (1,), generator=g))
            if at + n > width - int(torch.randint(0, 4, (1,), generator=g)):  # some rows end in padding
                break
            p = int(torch.randint(1, n, (1,), generator=g))
            seq = torch.randint(1, V, (n,), generator=g)
            k += 1
            tokens[r, at : at + n], segments[r, at : at + n] = seq, k
            prefix_mask[r, at : at + p] = True
            placed.append((r, at, seq, p))
            at += n
    return tokens, segments, prefix_mask, placed


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("layers", [1, 3])
def test_packed_hidden_states_equal_each_sequence_encoded_alone(seed, layers):
    m = make(layers=layers, dropout=0.1, attn_dropout=0.1)  # eval(): dropout off
    tokens, segments, prefix_mask, placed = random_rows(seed)
    assert len({p for *_, p in placed}) > 1 and max(int(segments[r].max()) for r in range(3)) > 2
    h = m.encode(tokens, segments=segments, prefix_mask=prefix_mask)  # (B, L, D)
    for r, at, seq, p in placed:
        alone = m.encode(seq[None], torch.tensor([p]))[0]  # (n, D)
        torch.testing.assert_close(h[r, at : at + len(seq)], alone, rtol=1e-10, atol=1e-10)
    assert (h[tokens == 0] == 0).all()
    # the fast path of one position per row reads the same states
    last = torch.tensor([max(at + len(s) - 1 for rr, at, s, _ in placed if rr == r) for r in range(3)])
    torch.testing.assert_close(m.encode(tokens, segments=segments, prefix_mask=prefix_mask, at=last),
                               h[torch.arange(3), last], rtol=1e-10, atol=1e-10)


def test_one_segment_per_row_would_leak_across_sequences():
    """The equivalence above is sensitive: treating a whole row as one sequence changes every later one."""
    m = make()
    tokens, segments, prefix_mask, placed = random_rows(5)
    leaky = m.encode(tokens, segments=(segments > 0).long(), prefix_mask=prefix_mask)
    r, at, seq, p = next(x for x in placed if x[1] > 0)  # a sequence that is not first in its row
    alone = m.encode(seq[None], torch.tensor([p]))[0]
    assert not torch.allclose(leaky[r, at : at + len(seq)], alone, atol=1e-6)


def test_attention_mask_with_segments():
    # row: s1 = 3 tokens, prompt 2 | s2 = 2 tokens, prompt 1 | PAD
    keep = torch.tensor([[1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    seg = torch.tensor([[1, 1, 1, 2, 2, 0]])
    pm = torch.tensor([[1, 1, 0, 1, 0, 0]], dtype=torch.bool)
    pos = torch.tensor([[0, 1, 2, 0, 1, 0]])
    got = attention_mask(keep, pos, None, causal=False, segments=seg, prefix_mask=pm)[0, 0].int().tolist()
    assert got == [
        [1, 1, 0, 0, 0, 0],  # prompt of s1: all of s1's prompt
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],  # target of s1: s1 up to itself
        [0, 0, 0, 1, 0, 0],  # prompt of s2 (1 token)
        [0, 0, 0, 1, 1, 0],
        [0, 0, 0, 0, 0, 1],  # a pad query sees itself only
    ]
    causal = attention_mask(keep, pos, None, causal=True, segments=seg)[0, 0].int()
    assert causal[4].tolist() == [0, 0, 0, 1, 1, 0] and causal[1].tolist() == [1, 1, 0, 0, 0, 0]
    bidir = attention_mask(keep, pos, None, causal=False, segments=seg)[0, 0].int()
    assert bidir[0].tolist() == [1, 1, 1, 0, 0, 0] and bidir[3].tolist() == [0, 0, 0, 1, 1, 0]
    # without segments the mask is the one of before (prefix-LM over the whole row)
    plain = attention_mask(keep, torch.arange(6)[None], torch.tensor([2]), causal=False)[0, 0].int()
    assert plain[0].tolist() == [1, 1, 0, 0, 0, 0] and plain[4].tolist() == [1, 1, 1, 1, 1, 0]


def test_hybrid_refuses_packed_rows():
    m = make("hybrid-tiny")
    tokens, segments, prefix_mask, _ = random_rows(0)
    with pytest.raises(KGCError, match="packed rows.*Mamba2.*signals.packing: false"):
        m.encode(tokens, segments=segments, prefix_mask=prefix_mask)
    m.encode(tokens)  # unpacked still works


def test_packed_argument_errors():
    m = make()
    tokens, segments, prefix_mask, _ = random_rows(0)
    with pytest.raises(KGCError, match="segments shape"):
        m.encode(tokens, segments=segments[:, :-1])
    with pytest.raises(KGCError, match="prefix_mask shape"):
        m.encode(tokens, segments=segments, prefix_mask=prefix_mask[:, :-1])
    with pytest.raises(KGCError, match="not prefix_len"):
        m.encode(tokens, torch.tensor([2, 2, 2]), segments=segments, prefix_mask=prefix_mask)
    with pytest.raises(KGCError, match="pass segments"):
        m.encode(tokens, prefix_mask=prefix_mask)
