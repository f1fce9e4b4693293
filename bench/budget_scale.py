"""What the budget keeper (sweep/budget.py) costs the driver per result as a sweep grows: its stopper's call at
each report, which also saves ``budget.jsonl``, timed with 100, 1,000 and 10,000 trials already drawn (the keeper
alone, in this process: no Ray). Prints the microseconds per result at each size and how many of the results
rewrote budget.jsonl (every one up to 500 trials drawn; past that at most one a second).

    .venv/bin/python bench/budget_scale.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from torchmate_ray.tune.sweep import budget as keeper
from torchmate_ray.tune.sweep.budget import SweepBudget, open_budget

RESULTS = 2000  # timed per size


def per_result_us(trials: int) -> tuple[float, int, int]:
    """Microseconds per result, the bytes of budget.jsonl and how many times it was written, with ``trials`` drawn."""
    with tempfile.TemporaryDirectory() as directory:
        budget = SweepBudget(seconds=36000, epochs=10 * trials * 9, gpu_hours=None, gpus_per_trial=0, max_epochs=9,
                             experiment_dir=directory, started_at=time.time())
        open_budget(budget)
        ids = [f"b_{index:05d}" for index in range(trials)]
        state = budget.state  # as the keeper leaves it: each trial drawn and reported once, the last 8 running
        for trial_id in ids:
            state.started.append(trial_id)
            state.epochs_of[trial_id], state.epoch_s[trial_id], state.later_epoch_s[trial_id] = 1, 1.0, 1.0
            state.first_epoch_s.append(1.0)
        state.epochs_done, running = trials, ids[-8:]
        state.running = dict.fromkeys(running, time.time())
        writes, write_whole = [], keeper.write_whole
        keeper.write_whole = lambda path, data: (writes.append(path), write_whole(path, data))
        started = time.perf_counter()
        for index in range(RESULTS):
            budget(running[index % 8], {"epochs": 2 + index // 8 % 7, "time_this_iter_s": 1.0})
        seconds = time.perf_counter() - started
        keeper.write_whole = write_whole
        return seconds / RESULTS * 1e6, (Path(directory) / "budget.jsonl").stat().st_size, len(writes)


def main() -> None:
    sizes = (100, 1000, 10_000)
    timed = {trials: per_result_us(trials) for trials in sizes}
    for trials, (us, size, writes) in timed.items():
        print(f"{trials:>6} trials drawn: {us:8.1f} us per result; budget.jsonl {size / 1e3:.0f} kB, written at "
              f"{writes} of {RESULTS} results", flush=True)


if __name__ == "__main__":
    main()
