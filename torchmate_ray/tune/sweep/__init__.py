"""The driver: one process that runs a sweep on Ray Tune, from the command line's request to its report.

    workflow.py          the sweep's sequence: resolve, validate, plan, open, search, confirm, report
    tune_environment.py  the Tune settings that only environment variables set (waiting trials, snapshots)
    run.py               Tune's scheduler, searcher, callbacks and run config; Tuner.fit, resume
    local_ray.py         the local Ray (started early, in the background) or the cluster's
    resources.py         the resource plan: workers, CPUs, GPUs per trial, concurrency, nodes
    storage.py           the check that every node sees the experiment's directory
    progress.py          the live table and the one line per trial (progress_text.py: their text)
    interrupt.py         Ctrl-C and SIGTERM: stop, save, exit 130/143
    ray_output.py        Ray Tune's own output off (unless --verbose): the progress display says it
    budget.py            the time, epoch and GPU budgets kept while the sweep runs
    budget_hooks.py      the searcher that draws while a budget holds, the callback that ends it at once
    result_record.py     result.json and params.json written per result; the budget of own-code failures
    tracker_callbacks.py MLflow and W&B callbacks (mlflow_runs.py: MLflow's, imported only when used)
    extend.py            a finished sweep grown by more trials
    confirm.py           the search's winners trained again with other seeds
    start_from.py        a sweep started from an earlier experiment's best configs

May import: every other room, private.py. Nothing imports it but torchmate_ray.cli.
"""
