"""Running many trainings at once: `make sweep` through DVC's queue, or over a Dask cluster."""
