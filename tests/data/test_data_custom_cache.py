"""Custom folders, DataFrames, the filter index, and the parsed-data cache."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kgc import KGCError
from kgc.data import load_dataset
from kgc.data.__main__ import main
from kgc.data.dataset import cache_dir
from kgc.evaluation import FilterIndex

from data_helpers import TEST, TRAIN, VALID, files_under, write_split_files


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("KGC_HOME", str(h))
    return h


def test_folder_triples_ids_and_rows(tmp_path: Path, home: Path) -> None:
    folder = write_split_files(tmp_path / "toy", TRAIN, VALID, TEST)
    ds = load_dataset(str(folder))
    assert ds.name == "toy" and ds.metadata["format"] == "triples"
    assert ds.entity_names == ["a", "b", "c", "d"] and ds.relation_names == ["r1", "r2"]
    assert ds.splits["train"].tolist() == [[0, 0, 1], [1, 1, 2], [0, 2, 0], [1, 3, 0]]
    assert ds.triples("valid").tolist() == [[0, 1, 2]]
    assert ds.splits["test"].tolist() == [[0, 1, 3]]
    fi = FilterIndex.for_dataset(ds)
    assert fi.answers_for(0, 2, [0]).tolist() == [1]       # (a, r1, ?) -> b
    assert fi.answers_for(1, 1, [0]).tolist() == [3]       # (?, r2, a) -> d
    assert fi.answers_for(0, 2, [1]).tolist() == [3]       # (b, r1, ?) -> d (from test)
    assert fi.answers_for(1, 2, [3]).tolist() == [0]       # (d, r2, ?) -> a
    assert fi.answers_for(1, 2, [2]).tolist() == []        # (c, r2, ?) -> none


def test_crlf_bom_and_blank_lines(tmp_path: Path, home: Path) -> None:
    folder = write_split_files(tmp_path / "crlf", "", VALID, TEST)
    (folder / "train.txt").write_bytes(b"\xef\xbb\xbfa\tr1\tb\r\n\r\nb\tr2\tc\r\n")
    ds = load_dataset(str(folder))
    assert ds.entity_names == ["a", "b", "c", "d"]
    assert len(ds.splits["train"]) == 2


def test_hyperedges_detected_and_declared(tmp_path: Path, home: Path) -> None:
    folder = write_split_files(tmp_path / "hyper", "m\tx\ty\tz\nm\tx\ty\nn\ty\tz\n", "m\tz\ty\tx\n", "n\tx\tz\n")
    ds = load_dataset(str(folder))
    assert ds.metadata["format"] == "hyperedges" and ds.max_arity == 3 and not ds.is_binary
    assert ds.splits["train"].tolist() == [[0, 0, 1, 2], [0, 0, 1, -1], [1, 1, 2, -1]]
    assert ds.arity("train").tolist() == [3, 2, 2]
    assert FilterIndex.for_dataset(ds).answers_for(0, 3, [0, 1]).tolist() == [2]
    # all-binary hyperedge data must be declared; detection reads it as triples
    bin_folder = write_split_files(tmp_path / "hyper2", "m\tx\ty\n", "m\ty\tx\n", "n\tx\ty\n")
    assert load_dataset(str(bin_folder)).relation_names == ["x", "y"]
    declared = load_dataset(str(bin_folder), format="hyperedges")
    assert declared.relation_names == ["m", "n"] and declared.entity_names == ["x", "y"]
    with pytest.raises(KGCError, match="expected 3 fields, got 4"):
        load_dataset(str(folder), format="triples")


def test_dataframe_with_split_column_and_mapping(home: Path) -> None:
    df = pd.DataFrame({
        "head": ["a", "b", "c", "a"],
        "relation": ["r1", "r2", "r1", "r2"],
        "tail": ["b", "c", "a", "c"],
        "split": ["train", "train", "valid", "test"],
    })
    ds = load_dataset(df)
    assert ds.entity_names == ["a", "b", "c"] and ds.relation_names == ["r1", "r2"]
    assert ds.triples("train").tolist() == [[0, 0, 1], [1, 1, 2]]
    assert ds.triples("test").tolist() == [[0, 1, 2]]
    frames = {s: df[df.split == s].drop(columns="split") for s in ("train", "valid", "test")}
    ds2 = load_dataset(frames)
    assert ds2.fingerprint == ds.fingerprint
    assert all(torch.equal(ds.splits[s], ds2.splits[s]) for s in ds.splits)
    with pytest.raises(KGCError, match=r"missing column\(s\) \['tail'\]"):
        load_dataset({s: f.drop(columns="tail") for s, f in frames.items()})
    with pytest.raises(KGCError, match="missing column 'split'"):
        load_dataset(df.drop(columns="split"))
    with pytest.raises(KGCError, match="split 'valid' is empty"):
        load_dataset(df[df.split != "valid"])
    bad = df.copy()
    bad.loc[1, "tail"] = None
    with pytest.raises(KGCError, match=r"DataFrame\[train\]: row 1: field 'tail' is empty"):
        load_dataset(bad)
    assert len(load_dataset(bad, on_bad_lines="skip").splits["train"]) == 1


def test_second_load_is_served_from_cache(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t0 = time.perf_counter()
    first = load_dataset("umls")
    t_first = time.perf_counter() - t0
    entry = cache_dir("umls", first.fingerprint)
    assert entry.parent.parent == home / "datasets"
    assert sorted(p.name for p in files_under(home)) == ["arrays.npz", "meta.json"]
    assert not first.metadata.get("from_cache")

    import kgc.data.download as download
    import kgc.data.parse as parse

    def boom(*a, **k):
        raise AssertionError("source files were read although the cache should serve this load")

    monkeypatch.setattr(download, "file_bytes", boom)
    monkeypatch.setattr(parse, "parse_text", boom)
    t0 = time.perf_counter()
    second = load_dataset("umls")
    t_second = time.perf_counter() - t0
    assert second.metadata["from_cache"] is True
    assert second.fingerprint == first.fingerprint
    assert second.entity_names == first.entity_names and second.relation_names == first.relation_names
    assert all(torch.equal(first.splits[s], second.splits[s]) for s in first.splits)
    print(f"umls first load {t_first:.3f}s, cached {t_second:.3f}s")
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["cache_format"] == 1 and meta["fingerprint"] == first.fingerprint


def test_corrupt_cache_entry_is_rebuilt(home: Path) -> None:
    first = load_dataset("nations")
    entry = cache_dir("nations", first.fingerprint)
    (entry / "arrays.npz").write_bytes(b"not an npz")
    again = load_dataset("nations")
    assert not again.metadata.get("from_cache")
    assert all(torch.equal(first.splits[s], again.splits[s]) for s in first.splits)
    assert load_dataset("nations").metadata["from_cache"] is True


def test_folder_cache_keyed_by_content(tmp_path: Path, home: Path) -> None:
    folder = write_split_files(tmp_path / "toy", TRAIN, VALID, TEST)
    a = load_dataset(str(folder))
    assert load_dataset(str(folder)).metadata["from_cache"] is True
    (folder / "test.txt").write_text("c\tr2\td\n")
    b = load_dataset(str(folder))
    assert b.fingerprint != a.fingerprint and not b.metadata.get("from_cache")
    assert b.splits["test"].tolist() == [[1, 2, 3]]


def test_cli_errors_exit_2_and_custom_stats(tmp_path: Path, home: Path, capsys: pytest.CaptureFixture) -> None:
    folder = write_split_files(tmp_path / "toy", TRAIN, "a\tr2\n", TEST)
    assert main(["stats", str(folder), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == f"error: {folder / 'valid.txt'}:1: expected 3 fields, got 2"
    assert main(["stats", str(folder), "--json", "--on-bad-lines", "skip"]) == 2
    assert "split 'valid' is empty" in capsys.readouterr().err
    assert main(["download", "nope"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown dataset 'nope'; known: fb15k237")
    assert main(["download", "nations"]) == 0
    out = capsys.readouterr().out
    assert out.count("ok") == 3 and "verified 1 dataset(s) from the mirror" in out
    assert files_under(home) == []  # download verifies the mirror; it writes nothing
    (folder / "valid.txt").write_text(VALID)
    assert main(["stats", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "entities     4" in out and "facts        train 4 / valid 1 / test 1" in out


def test_stale_temp_folder_is_cleaned_and_never_read(tmp_path: Path, home: Path) -> None:
    folder = write_split_files(tmp_path / "toy", TRAIN, VALID, TEST)
    ds = load_dataset(str(folder), use_cache=False)
    stale = cache_dir(ds.name, ds.fingerprint).parent / f".{ds.fingerprint}.abc.tmp"
    stale.mkdir(parents=True)
    (stale / "arrays.npz").write_bytes(b"half")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    again = load_dataset(str(folder))
    assert not again.metadata.get("from_cache") and not stale.exists()
    assert sorted(p.name for p in files_under(home)) == ["arrays.npz", "meta.json"]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c", "00d", "e f", "ü"]), st.sampled_from(["r", "s", "t"]),
                          st.sampled_from(["a", "b", "x", "y"])), min_size=3, max_size=20))
def test_folder_round_trip_property(tmp_path_factory: pytest.TempPathFactory, facts: list[tuple[str, str, str]]) -> None:
    """Any clean triple file loads so that names[ids] reproduce every line, in order, ids sorted by name."""
    folder = tmp_path_factory.mktemp("kg")
    parts = {"train": facts[:-2], "valid": facts[-2:-1], "test": facts[-1:]}
    for s, rows in parts.items():
        (folder / f"{s}.txt").write_text("".join(f"{h}\t{r}\t{t}\r\n" for h, r, t in rows), encoding="utf-8")
    ds = load_dataset(str(folder), use_cache=False)
    assert ds.entity_names == sorted({x for h, _, t in facts for x in (h, t)})
    assert ds.relation_names == sorted({r for _, r, _ in facts})
    for s, rows in parts.items():
        got = [(ds.entity_names[h], ds.relation_names[r], ds.entity_names[t]) for h, r, t in ds.triples(s).tolist()]
        assert got == rows
