"""What made a run: the code as it was (uncommitted edits too), the machine and library versions,
and the data; as MLflow tags, and `python -m pipeline.provenance RUN_ID` to print them."""
