"""`autoprox`'s entry point: parse, run one handler, turn errors into one line and an exit status."""

from __future__ import annotations

import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial

import torch
from tqdm.auto import tqdm

from gp_proxy.device import out_of_memory
from gp_proxy.errors import AutoproxError, AutoproxWarning
from vit_space.cli.commands import HANDLERS
from vit_space.cli.parser import build_parser


def _show_warning(message, category, filename, lineno, file=None, line=None, *, fallback: Callable) -> None:
    """Print an AutoproxWarning as one line, `autoprox: warning: ...` (above any progress bar, not
    inside it); hand others to `fallback`."""
    if issubclass(category, AutoproxWarning):
        tqdm.write(f"autoprox: warning: {message}", file=sys.stderr)
    else:
        fallback(message, category, filename, lineno, file, line)


@contextmanager
def sigterm_as_interrupt(enabled: bool = True) -> Iterator[None]:
    """Within the block, SIGTERM (a batch system's time limit, `kill`) stops the command as Ctrl-C
    does: its cleanups run (a shared statistics file removed, Dask clients closed) and everything
    saved stays; a second SIGTERM ends it at once. Set in the main thread only (Python's rule), and
    the previous handler restored after; nothing is set unless `enabled`."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        if previous is not None:  # None: a handler set outside Python, which cannot be put back
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    """Raise KeyboardInterrupt for the first SIGTERM; a second one, during the cleanups, ends the
    process at once (the default action)."""
    signal.signal(signum, signal.SIG_DFL)
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run `autoprox ARGV`; returns the exit status (0 done, 2 user error, 130 interrupted by Ctrl-C
    or SIGTERM)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or a bad option already reported on one line
        return e.code if isinstance(e.code, int) else 2
    func = HANDLERS[args.handler]
    try:
        # not with forked workers (`discover --workers N`): where SIGTERM reaches the whole process
        # group, a worker killed while holding the pool's queue lock leaves the pool's cleanup waiting
        # on it for ever, so SIGTERM ends such a run at once, as before (its workers then see the
        # pool's pipe close and exit)
        with warnings.catch_warnings(), sigterm_as_interrupt(getattr(args, "workers", 1) == 1):
            warnings.showwarning = partial(_show_warning, fallback=warnings.showwarning)
            func(args)
    except AutoproxError as e:
        print(f"autoprox: error: {e}", file=sys.stderr)
        return 2
    except torch.OutOfMemoryError as e:
        print(f"autoprox: error: {out_of_memory('this process', e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("autoprox: interrupted; everything finished so far is saved, rerun to resume", file=sys.stderr)
        return 130
    return 0
