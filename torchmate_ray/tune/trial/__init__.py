"""A trial's own process: a sampled config trained by Lightning, each epoch reported to Tune with a checkpoint.

    train.py              the trainable: configure, fit, report, continue from the newest checkpoint
    setup.py              what every trial's process sets up first (layout, Trainer defaults, the shared cache)
    distributed.py        a multi-worker trial: a Ray Train V2 run driven from the trial
    checkpoint_writer.py  Lightning's checkpoints written off the training thread, pruned by records' KeepRule

May import: records/, search/, torchmate_ray.lightning, Ray Tune and Train, torch, private.py. Never
experiment/, results/ or sweep/.
"""
