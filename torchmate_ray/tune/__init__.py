"""The Ray layer: search-space files, the trial function, ASHA sweeps and their results.

Only this package (and ``torchmate_ray.cli``) imports Ray. Its rooms, each a subpackage whose ``__init__`` is its
map, and the one way between them (a room imports only the rooms before it; tests/test_structure.py checks it):

    records/      the experiment's files by name, rows and their rules, checkpoint records: no Ray, Lightning, torch
    search/       the search space, its domains, settings and choices, Optuna's space, the ASHA subclass
    experiment/   an experiment directory: its invocation, its trials read into rows      (never imports trial/)
    trial/        a trial's own process: Lightning's fit, reports, checkpoints, Ray Train  (never imports experiment/)
    results/      the end of a sweep: the experiment read once; summary, leaderboard, best/, plots, the page
    sweep/        the driver: the run, local Ray, resources, progress, interrupts, budgets, trackers, extend,
                  confirm, start-from, and the workflow the command line runs

    records <- search <- experiment, trial <- results <- sweep <- torchmate_ray.cli

``private.py`` holds every private Ray and CPython API the package uses (any room but records/ may import it).
The packages' ``__init__`` modules import nothing: the command reads its arguments before Ray and Lightning are.
"""
