"""The Ray layer: search-space files, the trial function, ASHA sweeps and their results.

Only this package (and ``torchmate_ray.cli``) imports Ray.
"""
