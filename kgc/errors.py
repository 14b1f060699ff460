"""kgc's error types, in a leaf module (it imports nothing of kgc), so every layer can raise them."""


class KGCError(Exception):
    """Base class of every user-facing kgc error (CLIs print it as one line and exit 2)."""


#: exit status of a CLI whose training stopped on a preemption signal after writing its checkpoint:
#: sysexits' EX_TEMPFAIL ("temporary failure; the user is invited to retry"), distinct from success (0),
#: errors (1, 2), a kill by signal (128 + N) and Ctrl-C (130)
EXIT_PREEMPTED = 75


class Preempted(SystemExit):
    """Training stopped on SIGTERM/SIGUSR1 after writing ``checkpoints/last.ckpt`` (not an error:
    ``--resume`` continues the run). CLIs print the message (rank 0) and exit :data:`EXIT_PREEMPTED`.

    A :class:`SystemExit` (as Lightning's own ``SIGTERMException``), so ``except Exception`` handlers
    (an HPO study's per-trial ``except``) do not swallow it and, uncaught, the interpreter exits with
    ``code`` (75) without a traceback."""

    def __init__(self, message: str, checkpoint: str | None = None, step: int | None = None,
                 signal: str | None = None, rank_zero: bool = True, exit_status: int = EXIT_PREEMPTED):
        super().__init__(message)
        self.message = message
        self.checkpoint, self.step, self.signal, self.rank_zero = checkpoint, step, signal, rank_zero
        #: 0 in the DDP workers Lightning starts itself: its child-process observer SIGKILLs rank 0
        #: when a worker exits non-zero, which would replace rank 0's 75 by -9
        self.exit_status = exit_status
        self.code = exit_status  # SystemExit's status

    def __str__(self) -> str:
        return self.message
