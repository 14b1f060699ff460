"""Fine-tuning, evaluation and prediction end to end (tiny model, real UMLS and the synthetic KG)."""

from __future__ import annotations

import json

import pytest
import torch

import kgc
from kgc import KGCError
from kgc.finetune import main as finetune_main
from kgc.pretrain import main as pretrain_main

from training_helpers import run_module


@pytest.fixture(scope="module")
def umls_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    cfg = root / "tiny.yaml"
    from training_helpers import TINY_FINETUNE

    cfg.write_text(TINY_FINETUNE)
    out = root / "umls-run"
    assert finetune_main(["--dataset", "umls", "--from-scratch", "--config", str(cfg), "--out", str(out),
                          "--runs-root", str(root)]) == 0
    return out


def test_finetune_writes_metrics(umls_run):
    m = json.loads((umls_run / "metrics.json").read_text())
    for key in ("dataset", "split", "tie_policy", "metrics", "pessimistic", "breakdowns", "checkpoint", "config",
                "seed", "train_wall_time_s", "commit", "hardware", "finetune_steps"):
        assert key in m, key
    assert m["dataset"] == "umls" and m["split"] == "test" and m["tie_policy"] == "realistic"
    assert m["num_queries"] == 2 * 661
    assert 0 < m["metrics"]["mrr"] <= 1 and m["pessimistic"]["mrr"] <= m["metrics"]["mrr"] + 1e-12
    assert set(m["breakdowns"]) >= {"direction", "relation"}
    assert (umls_run / "checkpoints" / "best.ckpt").is_file()
    # a trained model beats chance on UMLS (135 entities: random MRR ~ 0.04)
    assert m["metrics"]["mrr"] > 0.1


def test_evaluate_cli_reproduces_metrics(umls_run, tmp_path):
    m = json.loads((umls_run / "metrics.json").read_text())
    res = run_module("kgc.evaluate", "--checkpoint", m["checkpoint"], "--dataset", "umls", "--json",
                     "--out", str(tmp_path / "m.json"))
    assert res.returncode == 0, res.stderr[-2000:]
    again = json.loads(res.stdout)
    assert again["metrics"]["mrr"] == pytest.approx(m["metrics"]["mrr"], abs=1e-9)
    assert json.loads((tmp_path / "m.json").read_text())["metrics"] == again["metrics"]


def test_predict_api_and_cli(umls_run):
    ckpt = json.loads((umls_run / "metrics.json").read_text())["checkpoint"]
    top = kgc.predict(ckpt, head="virus", relation="causes", k=5)
    assert len(top) == 5 and all({"entity", "id", "score", "known"} <= set(p) for p in top)
    assert [p["score"] for p in top] == sorted((p["score"] for p in top), reverse=True)
    with pytest.raises(KGCError, match="did you mean 'virus'"):
        kgc.predict(ckpt, head="viruss", relation="causes")
    res = run_module("kgc.predict", "--checkpoint", ckpt, "--head", "virus", "--relation", "cuases")
    assert res.returncode == 2 and "unknown relation 'cuases'" in res.stderr


@pytest.mark.parametrize("direction", ["tail", "head"])
def test_predict_filtered_is_unfiltered_minus_the_known_answers(umls_run, direction):
    """The known answers are computed here from the raw UMLS splits (train + valid + test): a wrong filter
    key or direction marks the wrong entities ``known``, and ``filtered=True`` must drop exactly those."""
    from kgc.data import load_dataset

    ckpt = json.loads((umls_run / "metrics.json").read_text())["checkpoint"]
    ds = load_dataset("umls")
    r, virus, disease = (ds.relation_to_id["causes"], ds.entity_to_id["virus"],
                         ds.entity_to_id["disease_or_syndrome"])
    facts, train = ds.all_facts(), ds.splits["train"]  # (N, 3) rows (relation, head, tail)
    if direction == "tail":  # (virus, causes, ?)
        query = dict(head="virus")
        known = facts[(facts[:, 0] == r) & (facts[:, 1] == virus), 2]
        in_train = train[(train[:, 0] == r) & (train[:, 1] == virus), 2]
    else:  # (?, causes, disease_or_syndrome)
        query = dict(tail="disease_or_syndrome")
        known = facts[(facts[:, 0] == r) & (facts[:, 2] == disease), 1]
        in_train = train[(train[:, 0] == r) & (train[:, 2] == disease), 1]
    known = {ds.entity_names[i] for i in known.tolist()}
    assert in_train.numel() > 0 and len(known) < ds.num_entities  # real train answers, and unknown ones
    E = ds.num_entities
    full = kgc.predict(ckpt, relation="causes", k=E, **query)
    assert len(full) == E and len({p["entity"] for p in full}) == E
    assert {p["entity"] for p in full if p["known"]} == known
    assert {ds.entity_names[i] for i in in_train.tolist()} <= known
    filtered = kgc.predict(ckpt, relation="causes", k=E, filtered=True, **query)
    assert filtered == [p for p in full if not p["known"]]
    top = kgc.predict(ckpt, relation="causes", k=3, filtered=True, **query)
    assert top == filtered[:3]


def test_evaluate_cli_flags_change_what_is_ranked(umls_run, tmp_path):
    """--unfiltered, --tie-policy and --split each reach the evaluator: the CLI's numbers equal the
    Python API's with the same setting, and each differs from the default run."""
    from kgc.data import load_dataset
    from kgc.evaluate import main as evaluate_main
    from kgc.evaluation import ModelScorer, evaluate
    from kgc.training.restore import load_model

    ckpt = json.loads((umls_run / "metrics.json").read_text())["checkpoint"]

    def cli(*args):
        out = tmp_path / f"r{len(list(tmp_path.iterdir()))}.json"
        assert evaluate_main(["--checkpoint", ckpt, "--out", str(out), *args]) == 0
        return json.loads(out.read_text())

    base, raw = cli(), cli("--unfiltered")
    pessimistic, valid = cli("--tie-policy", "pessimistic"), cli("--split", "valid")
    ds = load_dataset("umls")
    model, vocab, _ = load_model(ckpt)
    api = lambda split="test", **kw: evaluate(ModelScorer(model, vocab), ds, split, distributed=False, **kw)  # noqa: E731
    assert base["filtered"] and base["metrics"] == api().metrics
    assert not raw["filtered"] and raw["metrics"] == api(filtered=False).metrics
    assert raw["metrics"]["mrr"] < base["metrics"]["mrr"]  # UMLS queries have many known answers
    assert pessimistic["tie_policy"] == "pessimistic" and pessimistic["metrics"] == base["pessimistic"]
    assert valid["split"] == "valid" and valid["num_queries"] == 2 * len(ds.splits["valid"])
    assert valid["metrics"] == api("valid").metrics != base["metrics"]


def test_predict_cli_filtered_json_equals_the_api(umls_run, capsys):
    from kgc.predict import main as predict_main

    ckpt = json.loads((umls_run / "metrics.json").read_text())["checkpoint"]
    for extra, filtered in (([], False), (["--filtered"], True)):
        assert predict_main(["--checkpoint", ckpt, "--head", "virus", "--relation", "causes", "-k", "135", "--json",
                             *extra]) == 0
        printed = json.loads(capsys.readouterr().out)
        assert printed == kgc.predict(ckpt, head="virus", relation="causes", k=135, filtered=filtered)
        assert any(p["known"] for p in printed) != filtered  # all 135 entities: the known ones show up only unfiltered


def test_finetune_starts_from_newest_pretraining_run(tmp_path, tiny_pretrain_cfg, tiny_finetune_cfg):
    runs = tmp_path / "runs"

    def pretrain(*args):
        before = set(runs.iterdir()) if runs.is_dir() else set()
        assert pretrain_main(["--config", str(tiny_pretrain_cfg), "--runs-root", str(runs), *args]) == 0
        (new,) = set(runs.iterdir()) - before
        return new

    # an older run of the same dataset, the expected one, then a newer run of another dataset
    older = pretrain("--signals", "khop", "--max-steps", "3")
    pt = pretrain("--signals", "lcc,random_walk", "--max-steps", "5")
    other = pretrain("--dataset", "umls", "--signals", "lcc", "--max-steps", "2")
    assert len({older, pt, other}) == 3
    out = tmp_path / "ft"
    # a model section/override cannot change the pretrained architecture (dim 48 is ignored, dropout is taken);
    # a vanishing learning rate keeps the fine-tuned weights at the pretrained ones, which shows they were loaded
    assert finetune_main(["--dataset", "synthetic", "--config", str(tiny_finetune_cfg), "--runs-root", str(runs),
                          "--out", str(out), "--max-steps", "3", "--set", "model.dim=48",
                          "--set", "model.dropout=0.2", "--set", "optim.lr=1e-12"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["init_checkpoint"] == str(pt / "checkpoints" / "last.ckpt")
    assert sorted(m["signals"]) == ["lcc", "random_walk"]
    assert m["pretrain_steps"] == 5
    assert m["config"]["model"]["dim"] == 32 and m["config"]["model"]["dropout"] == 0.2
    pre = torch.load(pt / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    post = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert set(pre) == set(post)
    for k in pre:
        assert torch.allclose(pre[k], post[k], atol=1e-6), k
    # another dataset's checkpoint is refused with a clear message
    with pytest.raises(KGCError, match="built for dataset 'synthetic'"):
        finetune_main(["--dataset", "umls", "--init", str(pt / "checkpoints" / "last.ckpt"),
                       "--runs-root", str(runs), "--out", str(tmp_path / "bad")])
    assert not (tmp_path / "bad").exists()


def test_finetune_init_refuses_a_checkpoint_of_another_vocabulary_layout_by_name(tmp_path, tiny_pretrain_cfg,
                                                                                 tiny_finetune_cfg):
    from kgc.vocab import VocabularyMismatch
    from training_helpers import tampered_checkpoint

    pt = tmp_path / "pt"
    assert pretrain_main(["--config", str(tiny_pretrain_cfg), "--signals", "lcc", "--max-steps", "2",
                          "--out", str(pt), "--runs-root", str(tmp_path)]) == 0
    last = pt / "checkpoints" / "last.ckpt"
    args = ["--dataset", "synthetic", "--config", str(tiny_finetune_cfg), "--runs-root", str(tmp_path),
            "--max-steps", "1"]
    # a checkpoint of a kgc with one more signal: its task list (and token count) differ from this one's
    new_task = tampered_checkpoint(last, tmp_path / "task.ckpt", extra_task="path_rank")
    with pytest.raises(VocabularyMismatch, match=r"checkpoint .*task\.ckpt: vocabulary layout differs.*tasks differ: "
                                                 r"\[.*'lcc', 'path_rank'\] vs \[.*'lcc'\]"):
        finetune_main([*args, "--init", str(new_task), "--out", str(tmp_path / "bad1")])
    more_ents = tampered_checkpoint(last, tmp_path / "ents.ckpt", extra_entity="extra")
    n = kgc.load_dataset("synthetic").num_entities
    with pytest.raises(VocabularyMismatch, match=rf"entities differ: {n + 1} vs {n}"):
        finetune_main([*args, "--init", str(more_ents), "--out", str(tmp_path / "bad2")])
    # weights that do not fit their own stored vocabulary: named, not a tensor shape error
    unfit = tampered_checkpoint(last, tmp_path / "unfit.ckpt", grow_embedding=False, drop_tasks=True)
    ck = torch.load(unfit, weights_only=True)
    ck["state_dict"]["model.tok_emb.weight"] = ck["state_dict"]["model.tok_emb.weight"][:-1]
    torch.save(ck, unfit)
    with pytest.raises(VocabularyMismatch, match="token embedding has .* rows but its vocabulary has"):
        finetune_main([*args, "--init", str(unfit), "--out", str(tmp_path / "bad3")])
    assert not any((tmp_path / f"bad{i}").exists() for i in (1, 2, 3))
    # a checkpoint saved before the task list was stored means today's list: accepted
    old = tampered_checkpoint(last, tmp_path / "old.ckpt", drop_tasks=True)
    assert finetune_main([*args, "--init", str(old), "--out", str(tmp_path / "ok"), "--skip-test"]) == 0
