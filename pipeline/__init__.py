"""Reproducible CNN experiments of the HW2 report.

The modules here are the DVC stages, one each (download, preprocess, job, train, evaluate, plot,
report); the packages beside them hold what the stages use, by role (docs/architecture.md).
"""
