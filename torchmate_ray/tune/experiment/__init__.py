"""An experiment directory: where a sweep lives, what started it, and its trials read back.

    directory.py   the directory, its name, the invocation saved in it, resume and its refusals
    trials.py      every trial of the directory as a row (finished, running, interrupted), from its files

May import: records/, search/, private.py. Never trial/ (a trial's process needs none of this), results/ or sweep/.
"""
