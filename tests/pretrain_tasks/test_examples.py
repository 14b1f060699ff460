"""pretrain_tasks.examples: SignalExamples, pack and the path-target helper."""

from __future__ import annotations

import numpy as np

from pretrain_tasks.examples import pack, path_target
from pretrain_tasks.registry import TASKS

from toy_examples import toy


def test_pack_layout():
    ex = toy("khop", 2, prompt_len=2, target_len=[1, 3])
    assert ex.tokens.shape == (2, 8)
    assert ex.tokens.tolist() == [[9, 100, 101, 3, 1100, 2, 0, 0], [9, 102, 103, 3, 1105, 1106, 1107, 2]]
    assert ex.prefix_len.tolist() == [4, 4]
    assert ex.lengths.tolist() == [6, 8]
    assert ex.prompt(1).tolist() == [102, 103] and ex.target(1).tolist() == [1105, 1106, 1107]


def test_pack_task_id_is_the_task_token_minus_the_task_offset():
    ex = toy("khop", 3)
    assert ex.task.tolist() == [TASKS.index("khop")] * 3 and (ex.tokens[:, 0] == 6 + TASKS.index("khop")).all()


def test_path_target_interleaves_labels_and_entities_after_the_start(synth):
    v = synth.vocab
    labels = np.array([[3, 1, -1], [0, -1, -1]])
    ents = np.array([[7, 8, 9, -1], [5, 6, -1, -1]])  # column 0: the start entity (in the prompt)
    got = path_target(v, labels, ents)
    assert got.dtype == np.int64 and got.shape == (2, 6)
    assert got[0].tolist() == [v.rel(3), v.ent(8), v.rel(1), v.ent(9), v.rel(0), v.ent(0)]
    assert got[1].tolist() == [v.rel(0), v.ent(6), v.rel(0), v.ent(0), v.rel(0), v.ent(0)]
    # pack cuts each row at twice its number of steps, so the padding never reaches a sequence
    ex = pack("shortest_path", v.task("shortest_path"), v.sep, v.eos, v.ent(np.array([[7, 9], [5, 6]])), got,
              np.array([4, 2]))
    assert ex.target(0).tolist() == got[0, :4].tolist() and ex.target(1).tolist() == got[1, :2].tolist()
    assert ex.task.tolist() == [v.task_id("shortest_path")] * 2
