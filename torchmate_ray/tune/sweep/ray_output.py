"""Ray Tune's own output off for a sweep (unless ``--verbose``): the progress display (progress.py) and the
command's lines say it better."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

# Ray's log records that the progress display and the command say better: trial errors (the first record
# carries the whole traceback, with ANSI colours; the second lists the errored trials once more at the end),
# an interruption (with Ray's own resume hint, where ours is --resume) and, on a resume, trials that had not
# reported anything yet (no result.json to read).
QUIETED_LOGS = {"ray.tune.execution.tune_controller": ("Trial task failed for trial",),
                "ray.tune.tune": ("Trials did not complete", "Stop signal received", "Experiment has been interrupted"),
                "ray.tune.analysis.experiment_analysis": ("Failed to fetch metrics",)}


class _DropRecords(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


@contextlib.contextmanager
def quiet_ray_output(verbose: bool) -> Iterator[None]:
    """Ray Tune's output off for the sweep (unless ``verbose``), so the progress display is all there is.

    ``RunConfig(verbose=0)`` alone is not enough: Ray's new output engine (the default) still prints
    its experiment banner and a table for every trial error (ray/tune/experimental/output.py); its
    legacy engine prints nothing at 0. Ray also logs each trial error's traceback: the progress line
    gives the error's last line and the file that keeps the traceback.
    """
    if verbose:
        yield
        return
    saved = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    filters = [(logging.getLogger(name), _DropRecords(prefixes)) for name, prefixes in QUIETED_LOGS.items()]
    for logger, drop in filters:
        logger.addFilter(drop)
    try:
        yield
    finally:
        for logger, drop in filters:
            logger.removeFilter(drop)
        if saved is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = saved
