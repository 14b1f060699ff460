"""Bad input across datasets, configs and CLIs: each is a clear one-line error naming the file/key at fault
(CLIs: ``error: ...`` on stderr, exit status 2) or a documented, tested handling."""

from __future__ import annotations

from pathlib import Path

import pytest

from kgc import KGCError
from kgc.data import load_dataset
from kgc.finetune import main as finetune_main

from rel_helpers import run_module, write_cfg

TINY = """
model: {name: transformer, dim: 16, layers: 1, heads: 2, mlp_ratio: 2.0, dropout: 0.0, attn_dropout: 0.0, max_len: 32}
optim: {warmup_steps: 1}
trainer: {max_steps: 2, batch_size: 512, val_every: 0, ckpt_every: 0, log_every: 1, progress_bar: false}
eval: {val_max_queries: 50}
patience: 0
"""


def one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert "\n" not in msg, msg
    return msg


def folder(tmp_path: Path, train: bytes | str, valid: str = "a\tr\tb\n", test: str = "b\tr\ta\n") -> Path:
    d = tmp_path / "kg"
    d.mkdir(parents=True, exist_ok=True)
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        (d / f"{split}.txt").write_bytes(text if isinstance(text, bytes) else text.encode())
    return d


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished 2-step nations fine-tuning run (checkpoint for predict/evaluate/resume cases)."""
    root = tmp_path_factory.mktemp("bad_input")
    cfg = write_cfg(root, TINY)
    out = root / "run"
    assert finetune_main(["--dataset", "nations", "--from-scratch", "--config", str(cfg), "--out", str(out)]) == 0
    return out


def ft_error(tmp_path: Path, *args: str) -> str:
    cfg = write_cfg(tmp_path, TINY)
    out = tmp_path / "out"
    with pytest.raises(KGCError) as info:
        finetune_main(["--dataset", "nations", "--from-scratch", "--config", str(cfg), "--out", str(out), *args])
    assert not (out / "run.json").exists(), "a refused run must not leave a run folder"
    return one_line(info.value)


# ---------------------------------------------------------------- datasets

def test_malformed_line_names_file_and_line(tmp_path):
    with pytest.raises(KGCError, match=r"train\.txt:2: expected 3 fields, got 2") as info:
        load_dataset(str(folder(tmp_path, "a\tr\tb\nonly\ttwo\n")))
    one_line(info.value)


def test_crlf_and_bom_parse_like_clean_lines(tmp_path):
    ds = load_dataset(str(folder(tmp_path, "\ufeffa\tr\tb\r\nb\tr\ta\r\n")))
    assert ds.entity_names == ["a", "b"] and ds.relation_names == ["r"]


def test_space_inside_a_name_is_part_of_the_name(tmp_path):
    ds = load_dataset(str(folder(tmp_path, "a\tr\tb\nb c\tr\ta\n")))
    assert ds.entity_names == ["a", "b", "b c"] and ds.max_arity == 2


def test_tab_inside_a_name_in_a_triple_file_is_an_error(tmp_path):
    with pytest.raises(KGCError, match=r"train\.txt:2"):
        load_dataset(str(folder(tmp_path, "a\tr\tb\nb\tc\tr\ta\n")))


def test_empty_train_file(tmp_path):
    with pytest.raises(KGCError, match=r"train\.txt: split 'train' is empty") as info:
        load_dataset(str(folder(tmp_path, "")))
    one_line(info.value)


def test_empty_field(tmp_path):
    with pytest.raises(KGCError, match=r"train\.txt:1: field 2 is empty"):
        load_dataset(str(folder(tmp_path, "a\t\tb\n")))


def test_duplicate_facts_are_kept_and_counted(tmp_path):
    """Documented handling: duplicates stay in the split (as in the published files) and the stats count them."""
    from kgc.data.stats import compute_stats

    ds = load_dataset(str(folder(tmp_path, "a\tr\tb\na\tr\tb\nb\tr\ta\n")))
    assert len(ds.splits["train"]) == 3
    assert compute_stats(ds)["duplicates"]["total"] >= 1


def test_repeated_entities_in_a_fact_are_kept(tmp_path):
    """Self-loops (h == t) and n-ary facts naming one entity twice are valid facts."""
    ds = load_dataset(str(folder(tmp_path, "a\tr\ta\na\tr\tb\n")))
    assert ds.splits["train"].tolist() == [[0, 0, 0], [0, 0, 1]]
    nary = load_dataset(str(folder(tmp_path / "n", "r\ta\ta\tb\nr\ta\tb\tc\n", "r\ta\tb\tc\n", "r\tb\tc\ta\n")))
    assert nary.max_arity == 3 and nary.splits["train"][0].tolist() == [0, 0, 0, 1]


def test_unknown_dataset_name():
    with pytest.raises(KGCError, match="unknown dataset 'nosuchkg'; known: .*nations") as info:
        load_dataset("nosuchkg")
    one_line(info.value)


# ---------------------------------------------------------------- configs

def test_unknown_config_key(tmp_path):
    assert "did you mean 'max_steps'" in ft_error(tmp_path, "--set", "trainer.max_stpes=3")


def test_wrong_type(tmp_path):
    msg = ft_error(tmp_path, "--set", "trainer.batch_size=lots")
    assert "batch_size" in msg


def test_unknown_tie_policy(tmp_path):
    assert "tie_policy must be one of" in ft_error(tmp_path, "--set", "eval.tie_policy=median")


def test_label_smoothing_out_of_range(tmp_path):
    assert "label_smoothing must be in [0, 1)" in ft_error(tmp_path, "--set", "label_smoothing=1.5")


def test_negative_time_budget(tmp_path):
    assert "max_time '-5m'" in ft_error(tmp_path, "--max-time=-5m")


def test_zero_steps(tmp_path):
    assert "max_steps must be >= 1, got 0" in ft_error(tmp_path, "--max-steps", "0")


def test_invalid_yaml_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  max_steps: [1\n")
    with pytest.raises(KGCError, match=r"bad\.yaml: line \d+ invalid YAML") as info:
        finetune_main(["--dataset", "nations", "--from-scratch", "--config", str(bad), "--out", str(tmp_path / "o")])
    one_line(info.value)


def test_config_top_level_not_a_mapping(tmp_path):
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(KGCError, match=r"list\.yaml: top level must be a mapping"):
        finetune_main(["--dataset", "nations", "--from-scratch", "--config", str(bad), "--out", str(tmp_path / "o")])


def test_model_without_enough_roles_for_the_arity(tmp_path):
    """Arity above the model's maximum: the role embedding must cover every position."""
    msg = ft_error(tmp_path, "--set", "model.num_roles=1")
    assert "num_roles" in msg


# ---------------------------------------------------------------- CLIs and run folders

def test_missing_run_folder(tmp_path):
    with pytest.raises(KGCError, match="run.json missing"):
        finetune_main(["--resume", str(tmp_path / "nope")])


def test_resume_of_a_non_run_folder(tmp_path):
    (tmp_path / "random.txt").write_text("x")
    with pytest.raises(KGCError, match=r"not a kgc run folder \(run.json missing\)"):
        finetune_main(["--resume", str(tmp_path)])


def test_resume_of_a_pretraining_run_as_finetuning(tmp_path):
    from kgc.training.runs import RunDir

    RunDir(tmp_path / "pt").create({"kind": "pretrain", "dataset": "nations"}, {})
    with pytest.raises(KGCError, match="not a fine-tuning run"):
        finetune_main(["--resume", str(tmp_path / "pt")])


def test_init_of_a_missing_file(tmp_path):
    with pytest.raises(KGCError, match=r"nope\.ckpt: --init checkpoint not found"):
        finetune_main(["--dataset", "nations", "--init", str(tmp_path / "nope.ckpt"), "--out", str(tmp_path / "o")])


def test_init_and_from_scratch_exclude_each_other(tmp_path):
    with pytest.raises(KGCError, match="exclude each other"):
        finetune_main(["--dataset", "nations", "--init", "x.ckpt", "--from-scratch", "--out", str(tmp_path / "o")])


def test_out_folder_that_is_already_a_run(tiny_run, tmp_path):
    with pytest.raises(KGCError, match="run folder exists; pass --resume"):
        finetune_main(["--dataset", "nations", "--from-scratch", "--out", str(tiny_run)])


def test_unknown_entity_in_a_predict_query(tiny_run):
    import kgc

    ck = str(tiny_run / "checkpoints" / "last.ckpt")
    with pytest.raises(KGCError, match="unknown entity 'brazill'; did you mean 'brazil'") as info:
        kgc.predict(ck, head="brazill", relation="embassy")
    one_line(info.value)


def test_predict_query_shape_errors(tiny_run):
    import kgc

    ck = str(tiny_run / "checkpoints" / "last.ckpt")
    with pytest.raises(KGCError, match="exactly one of head"):
        kgc.predict(ck, head="brazil", tail="usa", relation="embassy")
    with pytest.raises(KGCError, match="k must be >= 1"):
        kgc.predict(ck, head="brazil", relation="embassy", k=0)
    # arity above the dataset's (and so the model's) maximum
    with pytest.raises(KGCError, match="arity 3 exceeds the dataset's maximum arity 2"):
        kgc.predict(ck, relation="embassy", entities={0: "brazil", 1: "usa"}, position=2)


def test_cli_exit_codes(tiny_run, tmp_path):
    """The processes exit 2 with one ``error:`` line and no traceback."""
    cases = [
        (("kgc.finetune", "--dataset", "nosuchkg", "--out", str(tmp_path / "a")), "unknown dataset 'nosuchkg'"),
        (("kgc.evaluate", "--checkpoint", str(tmp_path / "missing.ckpt")), "missing.ckpt: checkpoint not found"),
        (("kgc.predict", "--checkpoint", str(tiny_run / "checkpoints" / "last.ckpt"), "--head", "brazill",
          "--relation", "embassy"), "unknown entity 'brazill'"),
    ]
    for args, needle in cases:
        proc = run_module(*args, timeout=180)
        err = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (args, proc.stderr[-1500:])
        assert err and err[-1].startswith("error: ") and needle in err[-1], (args, proc.stderr[-1500:])
        assert "Traceback" not in proc.stderr
    # a negative budget is refused before any work
    proc = run_module("kgc.finetune", "--dataset", "nations", "--max-time=-5m", "--out", str(tmp_path / "b"), timeout=180)
    assert proc.returncode == 2 and "max_time" in proc.stderr.strip().splitlines()[-1], proc.stderr[-1500:]
    assert not (tmp_path / "b").exists()
