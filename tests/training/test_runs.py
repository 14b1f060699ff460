"""Run folders: which pretraining run fine-tuning starts from (``find_latest_run``)."""

from __future__ import annotations

from kgc.training.runs import RunDir, find_latest_run


def make_run(root, name, created, kind="pretrain", dataset="umls", fingerprint="fp", checkpoint=True):
    run = RunDir(root / name)
    run.create({"kind": kind, "dataset": dataset, "fingerprint": fingerprint}, {})
    run.update_meta(created=created)
    if checkpoint:
        (run.checkpoints / "last.ckpt").write_bytes(b"ckpt")
    return run


def test_find_latest_run_picks_the_newest_matching_run(tmp_path):
    # folder names sort against creation order, so neither glob nor name order gives the answer
    make_run(tmp_path, "z-oldest", "2026-01-01T00:00:00")
    make_run(tmp_path, "y-old", "2026-01-02T00:00:00")
    make_run(tmp_path, "b-newer", "2026-01-02T00:00:00.250000")  # same second, later microseconds
    make_run(tmp_path, "a-other-dataset", "2026-03-01T00:00:00", dataset="nations")
    make_run(tmp_path, "a-finetune", "2026-03-01T00:00:00", kind="finetune")
    make_run(tmp_path, "a-other-fingerprint", "2026-03-01T00:00:00", fingerprint="other")
    make_run(tmp_path, "a-no-checkpoint", "2026-04-01T00:00:00", checkpoint=False)
    broken = tmp_path / "a-broken"
    broken.mkdir()
    (broken / "run.json").write_text("{not json")
    best = find_latest_run(tmp_path, "pretrain", "umls", "fp")
    assert best is not None and best.path.name == "b-newer"
    # without a fingerprint the newest umls pretraining run with a checkpoint wins
    assert find_latest_run(tmp_path, "pretrain", "umls").path.name == "a-other-fingerprint"
    assert find_latest_run(tmp_path, "pretrain", "nations").path.name == "a-other-dataset"
    assert find_latest_run(tmp_path, "pretrain", "wn18rr") is None
    assert find_latest_run(tmp_path / "missing", "pretrain", "umls") is None


def test_equal_stamps_break_ties_by_folder_name(tmp_path):
    make_run(tmp_path, "run-b", "2026-01-01T00:00:00")
    make_run(tmp_path, "run-a", "2026-01-01T00:00:00")
    assert find_latest_run(tmp_path, "pretrain", "umls").path.name == "run-b"


def test_created_stamps_order_runs_created_in_one_second(tmp_path):
    first = RunDir(tmp_path / "first")
    first.create({"kind": "pretrain", "dataset": "umls"}, {})
    second = RunDir(tmp_path / "second")
    second.create({"kind": "pretrain", "dataset": "umls"}, {})
    assert first.meta()["created"] < second.meta()["created"]


def test_new_run_path_never_reuses_a_folder_made_in_the_same_second(tmp_path, monkeypatch):
    from kgc.training import runs

    monkeypatch.setattr(runs, "timestamp", lambda: "20261201-120000")
    first = runs.new_run_path(None, tmp_path, "umls-finetune-scratch-transformer")
    second = runs.new_run_path(None, tmp_path, "umls-finetune-scratch-transformer")
    third = runs.new_run_path(None, tmp_path, "umls-finetune-scratch-transformer")
    assert [p.name for p in (first, second, third)] == [
        "umls-finetune-scratch-transformer-20261201-120000", "umls-finetune-scratch-transformer-20261201-120000-2",
        "umls-finetune-scratch-transformer-20261201-120000-3"]
    assert all(p.is_dir() for p in (first, second, third))
    assert runs.new_run_path(tmp_path / "mine", tmp_path, "x") == tmp_path / "mine"  # --out as given
