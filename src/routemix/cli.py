"""The ``routemix`` command (also ``python -m routemix``).

Subcommands: ``cluster`` (clustering of a dataset by NMM-EM or a peer method), ``predict`` (a
clustering run's clusters of new data), ``train`` and ``eval`` (supervised classifiers of the
model zoo), ``datasets`` and ``models`` (what the registries hold), ``bench`` (reproductions and
benchmarks) and ``viz`` (figures). Each is declared, with its options and its handler, in a module
of :mod:`routemix.commands`; this module builds the parser from them and runs the handler.

A user's mistake (:class:`RoutemixError` or a ``ValueError`` from input validation) prints one
line and exits with status 2; ``--debug`` shows the traceback instead. SIGINT and SIGTERM end a
command with one line and status 130 or 143; a model in training saves its state first
(:mod:`routemix.train.resumable`), and the line says how to resume.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from routemix.allocator import keep_freed_memory_unless_opted_out
from routemix.errors import Interrupted, RoutemixError
from routemix.threads import prefer_passive_waiting


def build_parser(*, viz_figures: bool = True) -> argparse.ArgumentParser:
    """The whole command line; ``viz_figures=False`` leaves out the ``viz`` figures' own options
    (see :func:`routemix.commands.viz.add_parser`)."""
    from routemix.commands import bench, cluster, listing, train, viz

    parser = argparse.ArgumentParser(
        prog="routemix",
        description=__doc__.splitlines()[0],
        epilog="On Linux the command makes malloc keep freed memory for reuse (faster CPU training, higher peak "
        "memory; see routemix.allocator); ROUTEMIX_KEEP_FREED_MEMORY=0 turns that off. It sets "
        "OMP_WAIT_POLICY=PASSIVE unless set, so that fits on a busy machine slow down no more than the "
        "load explains (routemix.threads).",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for input errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (cluster, train, listing, bench):
        module.add_parser(commands)
    viz.add_parser(commands, figures=viz_figures)
    return parser


def _raise_interrupted(signum: int, frame) -> None:
    raise Interrupted(signum)


def _report_interrupted(error: Interrupted, command: str) -> int:
    """One line on stderr: what stopped the run, what was saved, how to go on; the shell's status."""
    if error.checkpoint is not None:
        how = f"continue with the same command and --resume (the --run-dir is {Path(error.checkpoint).parent.parent})."
        print(f"routemix: {error}; {how}", file=sys.stderr)
    else:
        print(f"routemix: {error}; nothing was saved to resume from: run `routemix {command}` again.", file=sys.stderr)
    return error.exit_status


def _output_closed() -> int:
    """After stdout's reader closed the pipe: point stdout at /dev/null, so that Python's flush at
    exit does not print a second error, and exit as a process stopped by SIGPIPE would (141)."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 128 + signal.SIGPIPE


def main(argv: list[str] | None = None) -> int:
    prefer_passive_waiting()  # before anything imports torch; see routemix.threads
    arguments = sys.argv[1:] if argv is None else argv
    parser = build_parser(viz_figures="viz" in arguments)
    args = parser.parse_args(arguments)
    # Ctrl-C and SIGTERM (a scheduler's stop, `kill`) end the command with a message and status
    # 130 / 143 (Lightning would turn a KeyboardInterrupt into exit 1, and SIGTERM exited 0); while
    # a model trains, routemix.train.resumable takes them over and saves first
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {signum: signal.signal(signum, _raise_interrupted) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        keep_freed_memory_unless_opted_out()  # CPU training speed; see routemix.allocator
        return args.handler(args)
    except (RoutemixError, ValueError) as error:
        if args.debug:
            raise
        print(f"routemix: error: {error}", file=sys.stderr)
        return 2
    except Interrupted as error:
        return _report_interrupted(error, args.command)
    except KeyboardInterrupt:
        return _report_interrupted(Interrupted(signal.SIGINT), args.command)
    except BrokenPipeError:  # the reader of our output went away (`routemix models | head`): stop quietly
        return _output_closed()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    raise SystemExit(main())
