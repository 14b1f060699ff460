"""pretrain_tasks.registry: signal names, the vocabulary's task list and build_vocab."""

from __future__ import annotations

import pytest

from graph_algos.graph import KGraph
from kgc import KGCError
from kgc.vocab import LEGACY_TASKS, Vocabulary
from pretrain_tasks import SIGNALS, TASKS, build_vocab, get_signal, load_signal, parse_signals


def test_registry_errors():
    with pytest.raises(KGCError, match="unknown signal 'nope'.*random_walk, shortest_path, khop, ig_path, lcc"):
        get_signal("nope")
    with pytest.raises(KGCError, match="valid signals"):
        parse_signals("khop,bogus")
    with pytest.raises(KGCError):
        parse_signals("")
    assert parse_signals("all") == list(SIGNALS)
    assert parse_signals("lcc, khop,lcc") == ["lcc", "khop"]
    with pytest.raises(KGCError, match="unknown key 'lenght'.*did you mean 'length'"):
        get_signal("random_walk", {"lenght": 3})
    with pytest.raises(KGCError, match="k must be >= 1"):
        get_signal("khop", {"k": 0})


def test_yaml_defaults_load():
    for name in SIGNALS:
        s = load_signal(name)
        assert s.name == name
    assert load_signal("random_walk", ["length=3"]).config.length == 3
    assert load_signal("khop", {"k": 3}).config.k == 3
    with pytest.raises(KGCError, match="unknown key"):
        load_signal("lcc", ["bins=3"])


def test_build_vocab_stable(synth):
    from pretrain_tasks import build_vocab

    v2 = build_vocab(synth.ds, KGraph.from_dataset(synth.ds))
    assert v2.to_dict() == synth.vocab.to_dict()
    assert synth.vocab.label_names[: synth.ds.num_relations] == synth.ds.relation_names
    assert synth.vocab.label_names[synth.ds.num_relations] == synth.ds.relation_names[0] + "^-1"


def test_task_list_comes_from_the_registry_and_keeps_todays_token_ids(synth):
    assert TASKS == ("lp",) + tuple(SIGNALS)
    # the registry starts with the list of every vocabulary saved before the list was stored (new signals
    # go at the end), so their task tokens keep today's ids: lp 6, random_walk 7, ..., lcc 11
    assert TASKS[: len(LEGACY_TASKS)] == LEGACY_TASKS
    v = synth.vocab
    assert v.tasks == list(TASKS)
    assert [v.task(t) for t in LEGACY_TASKS] == [6, 7, 8, 9, 10, 11]
    extra = len(TASKS) - len(LEGACY_TASKS)  # 0 today: roles at 12, hops 14, DEG 18, LCC 28, labels 38
    assert (v.role_offset, v.hop_offset, v.deg_offset, v.lcc_offset, v.relation_offset) == tuple(
        o + extra for o in (12, 14, 18, 28, 38))
    assert v.entity_offset == 38 + extra + 2 * synth.ds.num_relations


def test_build_vocab_needs_no_graph_and_checks_one_given(synth, umls):
    for kg in (synth, umls):
        assert build_vocab(kg.ds).to_dict() == build_vocab(kg.ds, kg.graph).to_dict()
        assert build_vocab(kg.ds).label_names == KGraph.from_dataset(kg.ds).label_names
        assert Vocabulary.build(kg.ds, tasks=TASKS).to_dict() == kg.vocab.to_dict()
    with pytest.raises(KGCError, match="does not match the vocabulary"):
        build_vocab(synth.ds, umls.graph)
