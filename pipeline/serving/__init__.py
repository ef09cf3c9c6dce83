"""Using a trained model: its preprocessing from raw image bytes, and the MLflow pyfunc model
that carries it (what the register stage logs, `mlflow models serve` and `pipeline.predict` load)."""
