"""The sweep's driver alone, against bare Ray Tune: the same trials, which train nothing and report a synthetic
metric as fast as they can, through the driver ``torchmate-tune`` builds (its run config's callbacks: the result
record, the failure budget, the progress display; its RecordedASHA; its searcher over search_spaces/lenet.py's
space; its Ray settings) and through a Tuner as Ray's docs write it (ASHAScheduler, Tune's own loggers).

    .venv/bin/python bench/driver_scale.py                  # both shapes at 1x, then 10x (about 45 min on 2 CPUs)
    .venv/bin/python bench/driver_scale.py --scale 1        # 1x only (about 6 min)
    .venv/bin/python bench/driver_scale.py --scale 1 --budgeted   # and ours with a time and an epoch budget

Two shapes, each run ours then bare, each in a fresh process (its own Ray):
- many results: 8 trials at once, each reporting R results (1x: 1,000; 10x: 10,000);
- many trials: T trials of 2 results, 8 at once (1x: 1,000; 10x: 10,000).

Each run prints the wall time of ``Tuner.fit``, the driver process's CPU time in it (user + system: this process,
Ray's threads in it included; not the trials', not Ray's own processes), that CPU per result and per trial, the
result rate the driver held, how many trial processes ran the trials, and (ours) the lag from a trial's report to
its line in ``result.json``. The table
gives ours / bare per shape: the issue asks for <= 1.2 per result (many results) and per trial (many trials), at
1x and at 10x alike.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPACE = ROOT / "search_spaces" / "lenet.py"
METRIC, CONCURRENT = "val/accuracy", 8
SHAPES = {"results": lambda scale: (CONCURRENT, 1000 * scale), "trials": lambda scale: (1000 * scale, 2)}


def synthetic_trial(config: dict, results: int) -> None:
    """A trial that trains nothing: ``results`` reports of the same value (ASHA then stops none: no value is below
    a rung's cutoff), each stamped with when it was reported."""
    from ray import tune

    pid = os.getpid()  # which process ran it: how many the sweep started (Tune reuses them: reuse_actors)
    for epoch in range(1, results + 1):
        tune.report({"epochs": epoch, METRIC: 0.5, "reported_at": time.time(), "pid": pid})


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_ours(trials: int, results: int, out: Path, budgeted: bool = False) -> dict:
    """The driver as ``torchmate-tune`` builds it (sweep/run.py), with the synthetic trainable; ``budgeted``: with a
    time and an epoch budget that never bind (their keeper, stopper and searcher at work: sweep/budget.py)."""
    from ray import tune

    from torchmate_ray.tune.search.space import load_search_space
    from torchmate_ray.tune.sweep.budget import build_budget, open_budget
    from torchmate_ray.tune.sweep.local_ray import LocalRay, connect_ray
    from torchmate_ray.tune.sweep.ray_output import quiet_ray_output
    from torchmate_ray.tune.sweep.resources import local_nodes, plan_resources
    from torchmate_ray.tune.sweep.run import build_run_config, build_tune_config, prepare_trial_config
    from torchmate_ray.tune.sweep.tune_environment import pending_trials, state_snapshots

    budget_settings = {"time_budget": "10h", "epoch_budget": 2 * trials * results} if budgeted else {}
    space = load_search_space(SPACE, settings={"num_samples": trials, "max_concurrent": CONCURRENT, "name": "ours",
                                               "storage_path": str(out), "resources": {"cpus_per_worker": 0.25},
                                               **budget_settings}, max_epochs=results)
    plan = plan_resources(space.settings, local_nodes(), space.num_trials)
    path = out / "ours"
    budget = build_budget(space.settings, plan.gpus_per_trial, results, path, time.time()) if budgeted else None
    run_config = build_run_config(space, path, budget=budget)
    tune_config = build_tune_config(space, plan, path, budget)
    if budget is not None:
        open_budget(budget)
    connect_ray(None, LocalRay.for_trials(plan.workers, plan.cpus_per_worker))
    trainable = tune.with_resources(tune.with_parameters(synthetic_trial, results=results), plan.bundle)
    with quiet_ray_output(False), pending_trials(plan.max_concurrent), state_snapshots(space.num_trials):
        tuner = tune.Tuner(trainable, param_space=prepare_trial_config(space), tune_config=tune_config,
                           run_config=run_config)
        return measure(tuner, trials, results) | reporting(path) | lag(path)


def run_bare(trials: int, results: int, out: Path) -> dict:
    """Ray Tune as its docs write it: the same trainable, space and scheduler settings, Tune's defaults otherwise."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from torchmate_ray.lightning.files import load_python_file

    config = load_python_file(SPACE).config
    ray.init(num_cpus=os.cpu_count(), log_to_driver=False)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(synthetic_trial, results=results), {"cpu": 0.25}),
        param_space=config,
        tune_config=tune.TuneConfig(metric=METRIC, mode="max", num_samples=trials, max_concurrent_trials=CONCURRENT,
                                    scheduler=ASHAScheduler(time_attr="epochs", max_t=results, grace_period=1,
                                                            reduction_factor=3), reuse_actors=True),
        run_config=tune.RunConfig(name="bare", storage_path=str(out), verbose=0))
    return measure(tuner, trials, results) | reporting(out / "bare")


def measure(tuner, trials: int, results: int) -> dict:
    cpu, wall = cpu_seconds(), time.monotonic()
    grid = tuner.fit()
    cpu, wall = cpu_seconds() - cpu, time.monotonic() - wall
    reported = sum(int(r.metrics.get("epochs") or 0) for r in grid)
    return {"trials": len(grid), "results": reported, "errors": len(grid.errors), "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2), "cpu_ms_per_result": round(1000 * cpu / max(reported, 1), 3),
            "cpu_ms_per_trial": round(1000 * cpu / max(len(grid), 1), 2),
            "results_per_s": round(reported / wall, 1)}


def recorded_lines(experiment: Path) -> list[dict]:
    return [json.loads(line) for path in experiment.glob("*/result.json") for line in path.read_text().splitlines()]


def reporting(experiment: Path) -> dict:
    """The rate the trials' reports went through the driver once they had started: a trial's report waits for the
    driver to take its last one (Tune's function trainables), so it is the rate the driver held."""
    lines = recorded_lines(experiment)
    times = sorted(row["reported_at"] for row in lines if "reported_at" in row)
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    return {"held_results_per_s": round(len(times) / span, 1) if span else None,
            "trial_processes": len({row["pid"] for row in lines if "pid" in row}) or None}


def lag(experiment: Path) -> dict:
    """From each report (the trial's ``reported_at``) to its line in ``result.json`` (the driver's ``recorded_at``)."""
    lags = sorted(row["recorded_at"] - row["reported_at"] for row in recorded_lines(experiment)
                  if "reported_at" in row and "recorded_at" in row)
    if not lags:
        return {}
    return {"lag_ms_median": round(1000 * statistics.median(lags), 1),
            "lag_ms_p95": round(1000 * lags[int(0.95 * (len(lags) - 1))], 1), "lag_ms_max": round(1000 * lags[-1], 1)}


def pending16(*args) -> dict:
    """Ours with Tune holding 16 trials waiting (its default for random search), not the planned concurrency."""
    os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = "16"
    return run_ours(*args)


def cold(*args) -> dict:
    """Ours with the trials' processes importing nothing before they start (no preload of torch and Lightning)."""
    from torchmate_ray.tune.sweep import local_ray

    local_ray.WARM_SYSTEM_CONFIG = local_ray.COLD_SYSTEM_CONFIG
    return run_ours(*args)


def child(kind: str, trials: int, results: int) -> None:
    out = Path(tempfile.mkdtemp(prefix=f"driver-{kind}-"))
    try:
        run = {"ours": run_ours, "bare": run_bare, "budgeted": lambda *a: run_ours(*a, budgeted=True),
               "pending16": pending16, "cold": cold}[kind]
        found = run(trials, results, out)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print("RESULT " + json.dumps(found), flush=True)


def run_child(kind: str, trials: int, results: int) -> dict:
    env = {**os.environ, "TORCHMATE_OFFLINE": "1"}
    done = subprocess.run([sys.executable, __file__, "--child", kind, str(trials), str(results)], env=env,
                          capture_output=True, text=True, timeout=3600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"{kind} {trials}x{results} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, action="append", help="1 and/or 10 (default: both)")
    parser.add_argument("--shape", choices=SHAPES, action="append", help="default: both")
    parser.add_argument("--budgeted", action="store_true", help="also ours with a time and an epoch budget")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return
    print(f"machine: {os.cpu_count()} CPUs; each run in a fresh process, ours then bare", flush=True)
    for scale in args.scale or (1, 10):
        for shape in args.shape or tuple(SHAPES):
            trials, results = SHAPES[shape](scale)
            kinds = ("ours", "bare", *(("budgeted",) if args.budgeted else ()))
            runs = {kind: run_child(kind, trials, results) for kind in kinds}
            per = "cpu_ms_per_result" if shape == "results" else "cpu_ms_per_trial"
            print(f"\n{shape} x{scale}: {trials} trials x {results} results")
            for kind, found in runs.items():
                print(f"  {kind}: " + ", ".join(f"{k} {v}" for k, v in found.items()), flush=True)
            for kind in kinds[::2]:  # ours, budgeted
                print(f"  {kind} / bare, driver CPU {per.removeprefix('cpu_ms_')}: {runs[kind][per] / runs['bare'][per]:.2f};"
                      f" wall: {runs[kind]['wall_s'] / runs['bare']['wall_s']:.2f}", flush=True)


if __name__ == "__main__":
    main()
