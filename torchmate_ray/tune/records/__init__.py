"""Records: what a sweep's files are called and hold, and the rules every view of a sweep shares.

    files.py          every file of an experiment by name (the one table), written whole, JSON lines read back
    rows.py           a trial as a row: its status, score, rank, and which is best
    trial_record.py   what a trial's directory says it trained (result.json, epochs.jsonl, code_errors.jsonl)
    trial/checkpoint_writer.py    a trial's checkpoints as files: their records and which stay (KeepRule)

May import: the standard library and torchmate_ray.errors. No Ray, no Lightning, no torch: the driver, the
results, the trials and the command's start-up all read these.
"""
