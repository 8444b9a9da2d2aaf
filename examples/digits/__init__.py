"""A model and a data set by import path, trained by the project's own loop (see sweep.yaml)."""
