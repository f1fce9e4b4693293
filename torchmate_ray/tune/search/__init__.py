"""The search: a search-space file read, checked and sampled, and what Tune searches it with.

    space.py            the search-space file: its config, the ``sweep`` settings, validation, --dry-run text
    domains.py          Ray Tune's distributions in a config: where they are, what they draw
    choices.py          the schedulers and searchers by name, and their arguments
    optuna_space.py     the config as Optuna's define-by-run space
    monitors.py         the metrics a config's model logs (the sweep metric checked against them)
    budget_settings.py  the budgets' settings: checked, estimated for the dry run, summarised
    trackers.py         the trackers a sweep may name (their callbacks: sweep/tracker_callbacks.py)
    asha.py             ASHA given back the rungs of what the sweep recorded

May import: records/, torchmate_ray.lightning (the config's builders), Ray Tune, Optuna, private.py. Never
experiment/, trial/, results/ or sweep/.
"""
