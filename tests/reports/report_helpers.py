from __future__ import annotations

from training_helpers import TINY_FINETUNE, TINY_PRETRAIN, run_module  # noqa: F401 - tests/training_helpers.py


def md_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every Markdown table in ``text`` as (header, rows) with cells stripped (``\\|`` unescaped)."""
    tables, block = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if len(block) >= 2:
            split = [[c.strip().replace("\\|", "|") for c in row.strip()[1:-1].replace("\\|", "\0").split("|")]
                     for row in block]
            split = [[c.replace("\0", "|") for c in row] for row in split]
            tables.append((split[0], split[2:]))
        block = []
    return tables
