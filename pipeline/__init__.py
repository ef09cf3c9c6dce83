"""Reproducible CNN experiments of the HW2 report: one module per DVC stage."""
