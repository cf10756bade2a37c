"""Run directories: one rule for every command that writes one (``train``, ``cluster``).

* A new run goes into a missing or empty directory.
* A directory that holds files already needs ``--resume`` (continue that run: its ``config.json``
  must agree with this command on everything that changes what the run computes, and
  :func:`resume_conflicts` names what does not) or ``--overwrite`` (the old run's files are
  removed first, and only those).
* Callers check the directory (:func:`check_run_dir`) with their other options, and create it
  (:func:`start_run_dir`) only once every option and the data have been validated, so a mistake
  leaves nothing behind. A run stopped before it saved anything to resume from removes what it
  created (:func:`discarded_if_stopped`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from routemix.errors import Interrupted, RoutemixError

# Everything routemix writes into a run directory; --overwrite removes these and nothing else.
RUN_FILES = ("config.json", "model.pt", "metrics.json", "labels.csv", "checkpoints", "logs", "tensorboard")
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


def check_run_dir(
    run_dir: str | os.PathLike | None, *, resume: bool, overwrite: bool, first_process: bool = True
) -> None:
    """A RoutemixError naming the flag when ``run_dir`` cannot take this run; writes nothing.

    ``first_process=False`` in the other processes of a data-parallel run: Lightning's launcher
    starts them after the first has written the directory, which is then theirs, not an old run."""
    if resume and overwrite:
        raise RoutemixError("--resume continues the run in --run-dir and --overwrite replaces it: pass one of them.")
    if resume and not run_dir:
        raise RoutemixError("--resume continues a run: pass the --run-dir of that run.")
    if run_dir is None:
        return
    path = Path(run_dir)
    if path.exists() and not path.is_dir():
        raise RoutemixError(f"--run-dir {path} is a file, not a directory: choose another --run-dir.")
    existing = path if path.exists() else next((p for p in path.parents if p.exists()), Path("."))
    if not existing.is_dir():
        raise RoutemixError(f"--run-dir {path}: {existing} is a file, not a directory; choose another --run-dir.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RoutemixError(
            f"--run-dir {path}: cannot write in {existing} (permission denied); choose another --run-dir."
        )
    if resume:
        if not (path / LAST_CHECKPOINT).is_file():
            raise RoutemixError(
                f"--resume: no checkpoint at {path / LAST_CHECKPOINT}; "
                "pass the --run-dir of an earlier run, or drop --resume."
            )
        return
    held = sorted(p.name for p in path.iterdir()) if path.is_dir() and first_process else []
    if held and not overwrite:
        shown = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
        raise RoutemixError(
            f"--run-dir {path} already holds files ({shown}): pass --resume to continue that run, "
            "--overwrite to replace it, or choose another --run-dir."
        )


def start_run_dir(run_dir: str | os.PathLike, *, overwrite: bool) -> Path:
    """Create ``run_dir``; with ``overwrite``, first remove the files an earlier run wrote there."""
    path = Path(run_dir)
    if overwrite and path.is_dir():
        for name in RUN_FILES:
            target = path / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


def discard_if_nothing_to_resume(run_dir: str | os.PathLike, *, created: bool) -> None:
    """After a run stopped early: remove ``run_dir`` if this run created it and it holds no
    checkpoint to resume from (a config.json alone is no run)."""
    path = Path(run_dir)
    if created and path.is_dir() and not (path / LAST_CHECKPOINT).is_file():
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def discarded_if_stopped(run_dir: str | os.PathLike, *, created: bool) -> Iterator[None]:
    """The block's run, whose directory :func:`discard_if_nothing_to_resume` removes when a signal
    (:class:`~routemix.errors.Interrupted`, Ctrl-C) stops it."""
    try:
        yield
    except (Interrupted, KeyboardInterrupt):
        discard_if_nothing_to_resume(run_dir, created=created)
        raise


def read_run_config(run_dir: str | os.PathLike) -> dict:
    """The ``config.json`` a run wrote, for ``--resume`` to compare with; a clear error when
    it cannot be read."""
    path = Path(run_dir) / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RoutemixError(f"--resume: cannot read {path} ({error}); pass the --run-dir of a routemix run.") from None


def run_config_if_any(run_dir: str | os.PathLike) -> dict:
    """The ``config.json`` a run wrote, or ``{}`` where there is none to read: for messages that
    say what a directory holds, where a missing config is not itself the error."""
    try:
        config = json.loads((Path(run_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def resume_conflicts(saved: dict, current: dict, keys: Iterable[str]) -> list[str]:
    """``"key: RUN in the run, NOW now"`` for each of ``keys`` whose value in this command
    differs from the saved run's (keys the run did not save are not compared)."""
    return [
        f"{key}: {saved[key]!r} in the run, {current.get(key)!r} now"
        for key in keys
        if key in saved and _normal(saved[key]) != _normal(current.get(key))
    ]


def _normal(value):
    """As JSON stores it: tuples are lists."""
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    return value
