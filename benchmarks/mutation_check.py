"""Mutation check: break one thing at a time in a scratch copy and show that a test fails (issue 18).

    python benchmarks/mutation_check.py                 # every mutation, a Markdown table at the end
    python benchmarks/mutation_check.py --only tie_policy_swapped --keep

For each mutation the working tree (tracked and untracked, not ignored files) is copied to a
temporary folder, one exact source edit is applied there (the original text must occur exactly
once, so a refactor that moves it makes the script fail loudly instead of testing nothing), and
the named tests run in that copy (``PYTHONPATH`` points at the copy, so the editable install of
the checkout is shadowed). A mutation is *caught* when pytest fails; the first failing test is
reported. The same tests are first run on the unmutated copy, which must pass. Not part of CI
(it runs the selected tests once per mutation: several minutes). Results: docs/reliability.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS = [
    Mutation(
        "filter_direction", "the filter looks answers up under the reverse direction's label",
        "kgc/evaluation/filter.py",
        "key = self._lookup(self._steps[0], self._first_code(q))",
        "key = self._lookup(self._steps[0], ((q.label.numpy() + q.num_relations) % max(1, 2 * q.num_relations))"
        " * self.max_arity + q.target_role.numpy())",
        ("tests/evaluation/test_eval_real_datasets.py", "tests/evaluation/test_eval_evaluator.py",
         "tests/evaluation/test_eval_queries_filter.py"),
    ),
    Mutation(
        "tie_policy_swapped", "optimistic and pessimistic ranks are swapped",
        "kgc/evaluation/ranks.py",
        "return getattr(self, policy).to(torch.float64)",
        "return getattr(self, {'optimistic': 'pessimistic', 'pessimistic': 'optimistic'}[policy]).to(torch.float64)",
        ("tests/evaluation/test_eval_ranks_metrics.py", "tests/evaluation/test_eval_evaluator.py"),
    ),
    Mutation(
        "inverse_offset", "head queries get the plain relation label and tail queries the inverse one",
        "kgc/evaluation/queries.py",
        "label = torch.where(head, relation + num_relations, relation)",
        "label = torch.where(head, relation, relation + num_relations)",
        ("tests/evaluation/test_eval_queries_filter.py", "tests/evaluation/test_eval_real_datasets.py"),
    ),
    Mutation(
        "context_leakage", "context items whose fact answers the query are no longer excluded",
        "graph_algos/context.py",
        "if answers:\n                        continue",
        "if False:\n                        continue",
        ("tests/graph_algos/test_ga_context.py", "tests/evaluation/test_eval_context.py"),
    ),
    Mutation(
        "latest_run_order", "find_latest_run returns the oldest matching run",
        "kgc/training/runs.py",
        "if best is None or key > best[0]:",
        "if best is None or key < best[0]:",
        ("tests/training/test_runs.py",),
    ),
    Mutation(
        "resume_step", "a resumed fine-tuning epoch restarts its data instead of skipping the consumed batches",
        "kgc/training/lp_data.py",
        "yield from self.order(epoch)[skip * self.batch_size:].tolist()",
        "yield from self.order(epoch).tolist()",
        ("tests/reliability/test_rel_resume.py",),
    ),
    Mutation(
        "pretrain_resume_step", "a resumed pretraining epoch restarts its batches instead of continuing at the step",
        "kgc/training/pretrain_data.py",
        "step = int(self.step_fn() or 0)",
        "step = int(self.step_fn() or 0) // self.steps_per_epoch * self.steps_per_epoch",
        ("tests/reliability/test_rel_resume.py::test_pretraining_killed_after_a_checkpoint_resumes_to_the_uninterrupted_run",),
    ),
    Mutation(
        "csv_rows_twice", "a resumed run keeps the killed run's rows past its checkpoint (steps logged twice)",
        "kgc/training/runner.py",
        'if self._keep_below_step is None or "step" not in header:',
        "if True:",
        ("tests/reliability/test_rel_resume.py::test_pretraining_killed_after_a_checkpoint_resumes_to_the_uninterrupted_run",),
    ),
    Mutation(
        "khop_sampling_weights", "k-hop degree sampling uses equal weights",
        "graph_algos/khop.py",
        "wdeg = np.log1p(g.out_degree.astype(np.float64))",
        "wdeg = np.ones(g.out_degree.shape[0], np.float64)",
        ("tests/graph_algos/test_ga_paths.py",),
    ),
]


def copy_tree(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def apply(root: Path, m: Mutation) -> None:
    path = root / m.path
    text = path.read_text()
    n = text.count(m.old)
    if n != 1:
        raise SystemExit(f"{m.name}: expected the original text exactly once in {m.path}, found {n}")
    path.write_text(text.replace(m.old, m.new))


def run_tests(root: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, str, float]:
    # the copy lives outside the checkout: point it at the checkout's dataset mirror and cache
    mirror = os.environ.get("KGC_DATA_MIRROR", str(REPO.parent / "shared" / "datasets"))
    env = {**os.environ, "PYTHONPATH": str(root), "KGC_DATA_MIRROR": mirror,
           "KGC_HOME": os.environ.get("KGC_HOME", str(REPO / ".kgc" / "test-home"))}
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-rf", *tests],
                          cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr, time.time() - t0


def first_failure(output: str) -> str:
    m = re.search(r"^(?:FAILED|ERROR) (\S+)", output, re.M)
    return m.group(1) if m else "(no FAILED line; see the log)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", action="append", help="run only this mutation (repeatable)")
    p.add_argument("--keep", action="store_true", help="keep the scratch copies")
    p.add_argument("--timeout", type=float, default=1800)
    args = p.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    if args.only and len(chosen) != len(set(args.only)):
        known = ", ".join(m.name for m in MUTATIONS)
        raise SystemExit(f"unknown mutation in --only {args.only}; known: {known}")
    rows = []
    for m in chosen:
        root = Path(tempfile.mkdtemp(prefix=f"kgc-mut-{m.name}-"))
        try:
            copy_tree(root)
            rc, out, secs = run_tests(root, m.tests, args.timeout)
            if rc != 0:
                raise SystemExit(f"{m.name}: the tests fail before the mutation:\n{out[-3000:]}")
            apply(root, m)
            rc, out, secs = run_tests(root, m.tests, args.timeout)
            caught = rc != 0
            rows.append((m, caught, first_failure(out) if caught else "-", secs))
            print(f"[mutation] {m.name}: {'caught by ' + rows[-1][2] if caught else 'NOT CAUGHT'} ({secs:.0f} s)",
                  flush=True)
        finally:
            if args.keep:
                print(f"[mutation] kept {root}")
            else:
                shutil.rmtree(root, ignore_errors=True)
    print("\n| mutation | what it breaks | where | caught | first failing test |")
    print("|---|---|---|---|---|")
    for m, caught, test, _ in rows:
        print(f"| `{m.name}` | {m.what} | `{m.path}` | {'yes' if caught else '**no**'} | `{test}` |")
    return 0 if all(c for _, c, _, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
