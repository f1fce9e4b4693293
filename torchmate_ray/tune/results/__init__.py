"""The results: an experiment directory read once into one model, and every file written from it.

    data.py               the experiment as plain data (ReportData): trials ranked, the best, rungs, compute spent
    confirmed_ranking.py  a confirmed sweep's configs ranked by the mean of their runs
    summary.py            summary.json, leaderboard.csv, best_config.py, the printed leaderboard
    export.py             best/: the winner's checkpoint, config, metrics and versions
    plots.py              the figures, from the data
    page.py               report.html (and the comparison of two experiments)
    finish.py             the end of a sweep: all of the above, and what to tell the user

May import: records/, search/, experiment/, private.py. Never trial/ (no Ray Train, no torch) or sweep/.
"""
