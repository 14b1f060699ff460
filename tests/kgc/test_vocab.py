"""kgc.vocab: the token layout, its task list, persistence and the named layout mismatch."""

from __future__ import annotations

import json

import pytest

from kgc import KGCError
from kgc.data import load_dataset
from kgc.vocab import LEGACY_TASKS, Vocabulary, VocabularyMismatch, label_names_for


@pytest.fixture(scope="module")
def ds():
    return load_dataset("synthetic")


def test_vocabulary_is_built_from_the_dataset_alone(ds):
    v = Vocabulary.build(ds, tasks=LEGACY_TASKS)
    assert v.entity_names == list(ds.entity_names) and v.num_relations == ds.num_relations
    R = ds.num_relations
    assert v.label_names == list(ds.relation_names) + [f"{r}^-1" for r in ds.relation_names]
    assert len(v) == 6 + 6 + 2 + 4 + 10 + 10 + 2 * R + ds.num_entities
    assert label_names_for(["a", "b"], 3) == ["a", "b", "a^-1", "b^-1", "a[0->2]", "b[0->2]", "a[1->2]", "b[1->2]",
                                              "a[2->0]", "b[2->0]", "a[2->1]", "b[2->1]"]


def test_task_list_is_saved_and_an_old_file_without_it_means_the_legacy_list(ds, tmp_path):
    v = Vocabulary.build(ds, tasks=LEGACY_TASKS)
    v.save(tmp_path / "vocab.json")
    stored = json.loads((tmp_path / "vocab.json").read_text())
    assert stored["tasks"] == list(LEGACY_TASKS)
    assert Vocabulary.load(tmp_path / "vocab.json").to_dict() == v.to_dict()
    del stored["tasks"]  # a vocab.json written before the list was stored
    (tmp_path / "old.json").write_text(json.dumps(stored))
    old = Vocabulary.load(tmp_path / "old.json")
    assert old.tasks == list(LEGACY_TASKS) and old.to_dict() == v.to_dict()
    v.check_compatible(old)
    assert Vocabulary(**stored).to_dict() == v.to_dict()  # checkpoints' kgc.vocab metadata: the same rule


def test_a_new_task_keeps_the_existing_task_ids_and_shifts_only_what_follows(ds):
    old = Vocabulary.build(ds, tasks=LEGACY_TASKS)
    new = Vocabulary.build(ds, tasks=[*LEGACY_TASKS, "path_rank"])
    assert [new.task(t) for t in LEGACY_TASKS] == [old.task(t) for t in LEGACY_TASKS]
    assert new.task("path_rank") == old.task("lcc") + 1 and new.task_id("path_rank") == 6
    assert new.role_offset == old.role_offset + 1 and len(new) == len(old) + 1
    assert new.token_name(new.task("path_rank")) == "[TASK:path_rank]"
    with pytest.raises(VocabularyMismatch, match="task 'path_rank' is not in this vocabulary"):
        old.task("path_rank")


@pytest.mark.parametrize("change,msg", [
    ({"tasks": [*LEGACY_TASKS, "path_rank"]},
     r"tasks differ: \['lp', 'random_walk', 'shortest_path', 'khop', 'ig_path', 'lcc', 'path_rank'\] vs "
     r"\['lp', 'random_walk', 'shortest_path', 'khop', 'ig_path', 'lcc'\]"),
    ({"tasks": ["lp", "random_walk", "khop", "shortest_path", "ig_path", "lcc"]}, "tasks differ"),
    ({"max_arity": 3}, r"roles \(max_arity\) differ: 3 vs 2"),
    ({"max_hops": 3}, "hops differ: 3 vs 4"),
    ({"num_buckets": 8}, "buckets differ: 8 vs 10"),
    ("one_more_entity", r"entities differ: (\d+) vs (\d+)"),
    ("renamed_label", r"labels differ: label 0 is 'other' vs"),
])
def test_check_compatible_names_what_differs(ds, change, msg):
    ours = Vocabulary.build(ds, tasks=LEGACY_TASKS)
    d = ours.to_dict()
    if change == "one_more_entity":
        d["entity_names"] = d["entity_names"] + ["extra"]
    elif change == "renamed_label":
        d["label_names"] = ["other"] + d["label_names"][1:]
    else:
        d.update(change)
    theirs = Vocabulary(**d)
    with pytest.raises(VocabularyMismatch, match=msg) as info:
        ours.check_compatible(theirs, what="checkpoint x.ckpt")
    assert str(info.value).startswith("checkpoint x.ckpt: vocabulary layout differs")
    assert isinstance(info.value, KGCError)


def test_check_compatible_refuses_another_dataset(ds):
    ours = Vocabulary.build(ds, tasks=LEGACY_TASKS)
    theirs = Vocabulary(**{**ours.to_dict(), "fingerprint": "0" * 64})
    with pytest.raises(VocabularyMismatch, match="built for dataset 'synthetic'"):
        ours.check_compatible(theirs)


@pytest.mark.parametrize("tasks", [["random_walk", "lp"], ["lp", "lcc", "lcc"], []])
def test_a_task_list_must_start_with_lp_and_not_repeat(ds, tasks):
    with pytest.raises(KGCError, match="must start with 'lp'"):
        Vocabulary.build(ds, tasks=tasks)


def test_a_saved_vocabulary_with_a_bad_task_list_is_named(ds, tmp_path):
    d = Vocabulary.build(ds).to_dict()
    (tmp_path / "vocab.json").write_text(json.dumps({**d, "tasks": ["random_walk"]}))
    with pytest.raises(KGCError, match=r"vocab\.json: malformed vocabulary \(vocabulary tasks \['random_walk'\]"):
        Vocabulary.load(tmp_path / "vocab.json")
