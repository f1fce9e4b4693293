"""A trial's own process: a trial whose process died goes on from its checkpoint; its imports stay out of the
collection that ends each trial."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import ray

from torchmate_ray.cli import tune_main

from spaces import Code, written_space


CRASH_ONCE = '''
import lightning.pytorch as pl
from pathlib import Path

class CrashOnce(pl.Callback):
    """Records each epoch it starts; the first time epoch 1 starts, the trial's process dies."""
    def __init__(self, log):
        self.record = Path(log)
    def on_train_epoch_start(self, trainer, pl_module):
        seen = self.record.read_text().split() if self.record.exists() else []
        self.record.write_text(" ".join(seen + [str(trainer.current_epoch)]))
        if trainer.current_epoch == 1 and "1" not in seen:
            raise RuntimeError("simulated crash")
'''


@pytest.mark.slow
def test_a_restarted_trial_resumes_from_its_checkpoint(tmp_path):
    path = tmp_path / "space.py"
    log = tmp_path / "epochs.txt"
    path.write_text(written_space(tmp_path / "data", hidden=[16], code=CRASH_ONCE, training={
        "max_epochs": 3, "limit_train_batches": 8, "limit_val_batches": 4,
        "callbacks": [{"name": Code("CrashOnce"), "cfg": {"log": log}}]},
        sweep={"metric": "val/accuracy", "mode": "max", "num_samples": 1, "max_failures": 1}))
    try:
        code = tune_main([str(path), "--storage-path", str(tmp_path / "results"), "--name", "exp"])
    finally:
        ray.shutdown()
    summary = json.loads((tmp_path / "results" / "exp" / "summary.json").read_text())
    assert code == 0 and summary["trials"] == {"finished": 1, "stopped": 0, "errored": 0}
    assert log.read_text().split() == ["0", "1", "1", "2"]  # after the crash it went on at epoch 1, not 0
    assert summary["epochs_run"] == 3


def test_a_trial_process_leaves_its_imports_out_of_the_collection_that_ends_each_trial():
    """The first trial freezes what its process imported; the collection at each trial's end still frees what
    the trial made (a reference cycle, as Lightning's Trainer and its loops hold)."""
    script = """
import gc, weakref
from torchmate_ray.tune.trial.train import freeze_imported_objects, release_memory
freeze_imported_objects()
frozen = gc.get_freeze_count()
class Node: pass
a, b = Node(), Node()
a.other, b.other = b, a
alive = weakref.ref(a)
del a, b
freeze_imported_objects()  # the next trial in the same process freezes nothing more
release_memory()
print(frozen > 100_000, gc.get_freeze_count() == frozen, alive() is None)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["True", "True", "True"], result.stderr[-2000:]
