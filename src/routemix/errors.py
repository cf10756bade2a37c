"""The exception type for a user's mistake, and the one for a run stopped by a signal.

Everything routemix raises on bad input that a person can fix (a missing dataset, a malformed
file, a corrupt checkpoint) is a :class:`RoutemixError` with a message that says what was wrong
and what to do. The command line prints the message alone and exits non-zero; anything else is a
bug and keeps its traceback. A run asked to stop (SIGINT, SIGTERM) raises :class:`Interrupted`,
which the command line turns into a message and the shell's status for that signal (130, 143).
"""

import signal


class RoutemixError(ValueError):
    """Bad input that the user can fix; the message says how.

    Subclasses ``ValueError`` so that scikit-learn style callers who catch ``ValueError`` for
    invalid data keep working.
    """


def unknown_name(kind: str, name: str, known, where: str) -> RoutemixError:
    """The error for a name missing from a registry, suggesting the closest known names."""
    import difflib

    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return RoutemixError(f"unknown {kind} {name!r}.{hint} {where}")


class Interrupted(BaseException):
    """A run stopped by ``signum``; ``checkpoint`` is where training saved its state (None when
    nothing was training). A ``BaseException``, like ``KeyboardInterrupt``, so that no
    ``except Exception`` on the way up swallows it."""

    def __init__(self, signum: int, checkpoint=None) -> None:
        self.signum, self.checkpoint = signum, checkpoint
        name = signal.Signals(signum).name
        saved = f"; training state saved in {checkpoint}" if checkpoint is not None else ""
        super().__init__(f"interrupted by {name}{saved}")

    @property
    def exit_status(self) -> int:
        """The status a shell gives a process ended by this signal: 128 + its number."""
        return 128 + self.signum
