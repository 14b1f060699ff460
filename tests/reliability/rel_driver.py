"""Run a kgc CLI in a subprocess with an injected fault (used by test_rel_resume.py, test_rel_preemption.py).

    python tests/reliability/rel_driver.py MODULE [args...]

``KGC_REL_FAULT`` selects the fault; the process then writes ``KGC_REL_MARKER``
and hangs until the test SIGKILLs it, so the kill lands exactly inside the
faulty operation:

- ``ckpt_write:STEP``: the first checkpoint write at global step >= STEP
  writes half of its bytes into the temp file and hangs (kill mid-write).
- ``validation:STEP``: the first validation at global step >= STEP hangs
  (after that step's periodic checkpoint was written).
- ``final_eval``: the first call of ``kgc.evaluation.evaluator.evaluate``
  (the final test evaluation after training) hangs.
- ``signal:NAME:STEP[:group|:workers]``: no hang; during the training step that
  becomes global step STEP, rank 0 sends signal NAME (``SIGTERM``, ``SIGUSR1``) to
  itself, with ``:group`` to its whole process group (every DDP rank, as SLURM
  does), with ``:workers`` only to the DDP worker processes Lightning started (rank
  0 itself gets none), and writes the marker.
- unset: no fault (the test kills at a random time).
"""

from __future__ import annotations

import importlib
import io
import os
import sys
import time
from pathlib import Path


def _hang(marker: str) -> None:
    Path(marker).write_text(str(os.getpid()))
    while True:
        time.sleep(60)


def install(fault: str, marker: str) -> None:
    if fault.startswith("ckpt_write:"):
        import torch

        threshold = int(fault.split(":", 1)[1])
        real_save = torch.save

        def slow_save(obj, f, *args, **kwargs):
            if isinstance(obj, dict) and int(obj.get("global_step", -1)) >= threshold and hasattr(f, "write"):
                buf = io.BytesIO()
                real_save(obj, buf, *args, **kwargs)
                data = buf.getvalue()
                f.write(data[: len(data) // 2])
                f.flush()
                _hang(marker)
            return real_save(obj, f, *args, **kwargs)

        torch.save = slow_save
    elif fault.startswith("validation:"):
        from kgc.training.module import KGCModule

        at = int(fault.split(":", 1)[1])
        real_start = KGCModule.on_validation_epoch_start

        def hang_validation(self):
            if self.trainer is not None and self.trainer.global_step >= at and not self.trainer.sanity_checking:
                _hang(marker)
            return real_start(self)

        KGCModule.on_validation_epoch_start = hang_validation
    elif fault.startswith("signal:"):
        import signal

        from kgc.training.module import KGCModule

        _, name, step, *target = fault.split(":")
        signum, at = getattr(signal, name), int(step)
        real_step = KGCModule.training_step
        sent = []

        def signalling_step(self, batch, batch_idx):
            if not sent and self.trainer.global_step == at - 1 and self.trainer.is_global_zero:
                sent.append(True)
                Path(marker).write_text(str(os.getpid()))
                if target == ["group"]:
                    os.killpg(os.getpgrp(), signum)
                elif target == ["workers"]:
                    for proc in self.trainer.strategy.launcher.procs:
                        os.kill(proc.pid, signum)
                else:
                    os.kill(os.getpid(), signum)
            return real_step(self, batch, batch_idx)

        KGCModule.training_step = signalling_step
    elif fault == "final_eval":
        import kgc.evaluation.evaluator as ev

        def hang_evaluate(*args, **kwargs):
            _hang(marker)

        ev.evaluate = hang_evaluate
    elif fault:
        raise SystemExit(f"unknown KGC_REL_FAULT {fault!r}")


if __name__ == "__main__":
    install(os.environ.get("KGC_REL_FAULT", ""), os.environ.get("KGC_REL_MARKER", "fault.marker"))
    module = importlib.import_module(sys.argv[1])
    from kgc.cli import run_cli

    run_cli(module.main, sys.argv[2:])
