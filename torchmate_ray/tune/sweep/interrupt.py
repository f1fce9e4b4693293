"""Ctrl-C and SIGTERM during a sweep: the first stops it the way Tune stops on Ctrl-C (trials end where they
are, the experiment's state is saved, ``--resume`` goes on from there), and is remembered so that the
command reports ``interrupted`` and exits 130 (SIGINT) or 143 (SIGTERM); a second ends the command at once.

Tune's own SIGINT handler knows only SIGINT and leaves no trace of having run (the sweep then looks
finished: exit 0). It is switched off (``TUNE_DISABLE_SIGINT_HANDLER``, read when the sweep starts) and
this handler asks Tune to stop through SIGUSR1, which Tune always handles the same way.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_code(signal_name: str) -> int:
    """128 + the signal's number, as a shell reports a command that a signal ended (SIGINT 130, SIGTERM 143)."""
    return 128 + signal.Signals[signal_name].value


class StoppedAtOnce(KeyboardInterrupt):
    """A second signal (or one before Tune's loop runs): the sweep ends without saving anything more."""

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.directory: Path | None = None  # the experiment it stopped (once it was opened): where to resume


class Interruption:
    """Context manager around ``Tuner.fit``: ``signal_name`` is ``"SIGINT"`` or ``"SIGTERM"`` once one came."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._saved: dict[int, Any] = {}
        self._saved_env: str | None = None

    def __enter__(self) -> Interruption:
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            return self
        self._saved_env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        self._saved = {number: signal.signal(number, self._handle) for number in SIGNALS}
        return self

    def __exit__(self, *exc: Any) -> None:
        for number, handler in self._saved.items():
            signal.signal(number, handler)
        if self._saved:
            if self._saved_env is None:
                os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
            else:
                os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self._saved_env

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.signal_name is not None or signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None):
            # a second signal, or one before Tune's loop runs: end now (Ray's processes go with this one)
            self.signal_name = self.signal_name or signal.Signals(number).name
            raise StoppedAtOnce(self.signal_name)
        self.signal_name = signal.Signals(number).name
        print(f"\n{self.signal_name}: stopping the sweep; the trials keep their last checkpoints "
              f"(again to stop at once)", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGUSR1)  # Tune's stop: end the loop, save the experiment's state
