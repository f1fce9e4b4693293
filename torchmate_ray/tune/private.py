"""Every private Ray or CPython API the package uses, one function each, with what it works around.

Nothing else in ``torchmate_ray`` reads an underscored attribute of another library, or a Ray object's internals:
a Ray upgrade that moves one breaks the function here, which says what it stands in for. Each function imports
what it reaches when it is called, so the command line can use this module before Ray is imported.
"""

from __future__ import annotations

import atexit
import json
import logging
from types import SimpleNamespace
from typing import Any

# Ray's loggers that say what this package handles itself (by the module name Ray logs them under)
RAY_TOKEN_LOGGER = "ray._private.authentication.authentication_token_setup"  # "token authentication is on"
RAY_WORKER_LOGGER = "ray._private.worker"  # "ray.init from a thread that is not the main thread"


def result_encoder() -> type[json.JSONEncoder]:
    """Tune's own encoder of results and configs (NumPy values, NaN, objects by their ``str``): ``result.json`` and
    ``params.json`` read as Tune's JSON logger wrote them. Tune exports no encoder."""
    from ray.tune.utils.util import SafeFallbackEncoder

    return SafeFallbackEncoder


def last_result(trial: Any) -> dict[str, Any]:
    """The newest result Tune holds of a trial (``Trial.last_result`` has no setter)."""
    return trial.run_metadata.last_result


def restore_last_result(trial: Any, result: dict[str, Any]) -> None:
    """Give a resumed trial the newest result the sweep recorded: Tune's state snapshot may be older than the record,
    and a trial that ends without reporting again ends with it (Tune's strict metric check reads it)."""
    trial.run_metadata.last_result = result


def make_next_failure_last(trial: Any) -> None:
    """End a trial at its next failure, whatever ``FailureConfig.max_failures`` allows: Tune has no per-trial budget
    (the sweep's own-code failures and its process failures are budgeted apart: sweep/result_record.py)."""
    trial.max_failures = trial.run_metadata.num_failures


def stand_in_trial(trial_id: str) -> Any:
    """A trial of an earlier run, for ASHA's rungs: ``AsyncHyperBandScheduler`` reads only ``trial_id`` of the trials
    it is given, and Tune has no way to add recorded results to a scheduler."""
    return SimpleNamespace(trial_id=trial_id)


def has_directory(trial: Any) -> bool:
    """Whether Tune has named the trial's directory yet (a trial a resumed sweep adds again has; a new one not):
    ``Trial.storage`` is Ray Train's internal StorageContext, and Tune says it in no public attribute."""
    return bool(trial.storage.trial_dir_name)


def trial_actor(trial: Any) -> Any:
    """The Ray actor running a trial, None while it has none: Tune exposes no handle to kill it at once."""
    return trial.temporary_state.ray_actor


def restored_run_config(tuner: Any) -> Any:
    """The RunConfig a restored Tuner runs with: ``Tuner.restore`` takes no other and Ray 2.60 has no public way to
    change it (Ray's own answer, ray#41364)."""
    return tuner._local_tuner.get_run_config()


def private_system_config(settings: dict[str, Any]) -> dict[str, Any]:
    """``ray.init``'s keyword for Ray's internal settings (``_system_config``: no public way to set them on a local
    Ray), a copy, since Ray writes its own settings into it."""
    return {"_system_config": dict(settings)}


def quiet_token_logger() -> None:
    """Ray says, on every local start, that it turned token authentication on (its default): noise for a Ray of our
    own on the loopback interface."""
    logging.getLogger(RAY_TOKEN_LOGGER).setLevel(logging.ERROR)


def ray_worker_logger() -> logging.Logger:
    """The logger Ray warns on when ``ray.init`` runs outside the main thread (the early Ray, on purpose)."""
    return logging.getLogger(RAY_WORKER_LOGGER)


def run_exit_handlers() -> None:
    """Run the ``atexit`` handlers now (Ray's and logging's: everything written is flushed and closed), before
    ``os._exit`` skips Python's teardown of the modules' objects; the standard library has no public call for it."""
    atexit._run_exitfuncs()
