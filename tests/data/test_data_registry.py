"""Registered datasets through the real mirror -> verify -> extract -> parse path, against MANIFEST.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from kgc import KGCError
from kgc.data import load_dataset
from kgc.data.parse import parse_text
from kgc.data.registry import datasets_dir, get_manifest, known_datasets, load_manifest
from kgc.data.stats import compute_stats

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["fb15k237", "wn18rr", "jf17k", "jf17k-sir", "umls", "kinships", "nations"]


@pytest.fixture(scope="module")
def manifest_json(mirror: Path) -> dict:
    data = json.loads((mirror / "MANIFEST.json").read_text())
    return {d["directory"]: d for d in data["datasets"]}


def test_registry_lists_the_seven_datasets() -> None:
    assert datasets_dir().resolve() == (ROOT / "datasets").resolve()  # kgc/resources/datasets -> datasets/
    assert set(NAMES) <= set(known_datasets())
    assert "synthetic" in known_datasets()
    assert get_manifest("FB15k-237").name == "fb15k237"  # alias, case-insensitive


@pytest.mark.parametrize("name", NAMES)
def test_manifest_yaml_matches_mirror_manifest(name: str, manifest_json: dict) -> None:
    m = load_manifest(datasets_dir() / f"{name}.yaml")
    ref = manifest_json[m.directory]
    ref_files = {f["path"].split("/", 1)[1]: f for f in ref["files"]}
    assert {f.name for f in m.files} == set(ref_files)
    for f in m.files:
        assert f.sha256 == ref_files[f.name]["sha256"]
        assert f.url == ref_files[f.name]["source_url"]
        ref_members = {a["name"]: a["sha256"] for a in ref_files[f.name].get("archive_members", [])}
        assert {mm.name: mm.sha256 for mm in f.members} == ref_members
    assert m.raw["license"] == ref["license"] and m.raw["citation"] == ref["citation"]


@pytest.mark.parametrize("name", NAMES)
def test_stats_equal_manifest_counts(name: str, manifest_json: dict) -> None:
    ds = load_dataset(name)
    st = compute_stats(ds)
    ref = manifest_json[get_manifest(name).directory]["counts"]
    assert st["entities"] == ref["entities"]
    assert st["relations"] == ref["relations"]
    assert st["max_arity"] == ref.get("max_arity", 2)
    for split in ("train", "valid", "test"):
        assert st["facts"][split] == ref["facts"].get(split, 0)
        assert ds.splits[split].dtype == torch.int64
        assert ds.splits[split].shape == (ref["facts"].get(split, 0), 1 + st["max_arity"])
    for split in ("valid", "test"):
        if split in ref.get("unseen_in_train", {}):
            assert st["unseen_in_train"][split] == ref["unseen_in_train"][split]
        rev = ref.get("valid_test_facts_whose_reverse_(t,r,h)_is_in_train", {})
        if split in rev:
            assert st["reverse_in_train"][split] == rev[split]
        linked = ref.get("valid_test_facts_whose_entity_pair_is_linked_in_train", {})
        if split in linked:
            assert st["entity_pair_linked_in_train"][split] == linked[split]
    if "self_loops" in ref:
        assert st["self_loops"] == ref["self_loops"]
    if "facts_with_a_repeated_entity" in ref:
        for split, n in ref["facts_with_a_repeated_entity"].items():
            assert st["facts_with_a_repeated_entity"][split] == n
    if "arity_histogram" in ref:
        for split, hist in ref["arity_histogram"].items():
            assert st["arity_histogram"][split] == hist
    assert st["duplicates"]["total"] == ref["duplicates_within_or_across_splits"]
    assert "entities_in_train" not in ref or st["entities_in_train"] == ref["entities_in_train"]


def test_stats_json_subprocess(tmp_path: Path, manifest_json: dict) -> None:
    env = dict(os.environ, KGC_HOME=str(tmp_path / "home"))
    proc = subprocess.run([sys.executable, "-m", "kgc.data", "stats", "umls", "--json"], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    st = json.loads(proc.stdout)
    ref = manifest_json["UMLS"]["counts"]
    assert (st["entities"], st["relations"], st["max_arity"]) == (ref["entities"], ref["relations"], 2)
    assert st["facts"] == ref["facts"]
    assert all(isinstance(v, int) for v in st["facts"].values())


def test_ids_are_sorted_raw_names_and_wn18rr_keeps_leading_zeros() -> None:
    ds = load_dataset("wn18rr")
    assert ds.entity_names == sorted(ds.entity_names)
    assert ds.relation_names == sorted(ds.relation_names)
    assert "00260881" in ds.entity_to_id and ds.entity_names[ds.entity_to_id["00260881"]] == "00260881"
    assert all(len(e) == 8 for e in ds.entity_names)
    t = ds.triples("train")
    assert t.shape == (86835, 3)
    torch.testing.assert_close(t[:, 1], ds.splits["train"][:, 0])
    assert (ds.arity("test") == 2).all()
    assert ds.is_binary and ds.max_arity == 2


def test_fb15k237_crlf_is_stripped_and_first_fact_maps_back(mirror: Path) -> None:
    import tarfile

    ds = load_dataset("fb15k237")
    assert not any(e.endswith("\r") for e in ds.entity_names)
    with tarfile.open(mirror / "FB15k-237" / "FB15k-237.tar.gz") as tar:
        first = tar.extractfile("train.txt").readline().decode().rstrip("\r\n").split("\t")
    r, h, t = ds.splits["train"][0].tolist()
    assert [ds.entity_names[h], ds.relation_names[r], ds.entity_names[t]] == first


def test_jf17k_instance_ids_dropped_and_test_k_partition_test(mirror: Path) -> None:
    ds = load_dataset("jf17k")
    assert not ds.is_binary and ds.max_arity == 6
    assert not any(e.startswith("instance") for e in ds.entity_names)
    with pytest.raises(KGCError, match="binary"):
        ds.triples("train")
    folder = mirror / "JF17K-HypE"
    full = parse_text((folder / "test.txt").read_bytes(), "test.txt", "hyperedges", instance_id_column=True)
    parts: Counter = Counter()
    for k in range(2, 7):
        rows = parse_text((folder / f"test_{k}.txt").read_bytes(), f"test_{k}.txt", "hyperedges",
                          instance_id_column=True)
        assert all(len(r) == k + 1 for r in rows)
        parts.update(tuple(r) for r in rows)
    assert parts == Counter(tuple(r) for r in full)
    # the loaded test split is exactly test.txt, row by row
    names = [[ds.relation_names[row[0]]] + [ds.entity_names[e] for e in row[1:] if e >= 0]
             for row in ds.splits["test"][:50].tolist()]
    assert names == full[:50]
    padded = ds.splits["test"][ds.arity("test") == 2]
    assert (padded[:, 3:] == -1).all()


def test_jf17k_sir_valid_policy_and_relation_arities(mirror: Path) -> None:
    ds = load_dataset("jf17k-sir")
    assert ds.splits["valid"].shape == (0, 7)
    assert "valid_policy" in ds.metadata
    arities = dict(line.split("\t") for line in (mirror / "JF17K-SIR-v1" / "relation.txt").read_text().split("\n") if line)
    expected = torch.tensor([int(arities[r]) for r in ds.relation_names])
    for split in ("train", "test"):
        assert torch.equal(ds.arity(split), expected[ds.splits[split][:, 0]])
    held = ds.with_valid_from_train(0.1, seed=3)
    assert len(held.splits["valid"]) == round(0.1 * 76379)
    assert len(held.splits["valid"]) + len(held.splits["train"]) == 76379
    assert held.fingerprint != ds.fingerprint
    again = ds.with_valid_from_train(0.1, seed=3)
    assert torch.equal(again.splits["valid"], held.splits["valid"])
    both = torch.cat([held.splits["train"], held.splits["valid"]])
    assert torch.equal(torch.unique(both, dim=0), torch.unique(ds.splits["train"], dim=0))
