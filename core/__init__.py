"""The bottom of the house: the run configuration and the error types every layer uses (imports nothing of the project)."""
