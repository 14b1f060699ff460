from __future__ import annotations

import pytest

from report_helpers import TINY_FINETUNE, TINY_PRETRAIN


@pytest.fixture(scope="session")
def grid(tmp_path_factory):
    """A real ablation grid on UMLS (no pretraining + lcc, seed 0) run once for all report tests.

    Returns ``(runs_root, pretrain_cfg, finetune_cfg, first_call_result)``.
    """
    from kgc.ablation import run_grid

    root = tmp_path_factory.mktemp("grid")
    pt_cfg, ft_cfg = root / "pt.yaml", root / "ft.yaml"
    pt_cfg.write_text(TINY_PRETRAIN)
    ft_cfg.write_text(TINY_FINETUNE)
    runs = root / "runs"
    done = run_grid("umls", 3, 6, [["lcc"]], [0], runs, str(pt_cfg), str(ft_cfg), log=lambda m: None)
    return runs, pt_cfg, ft_cfg, done
