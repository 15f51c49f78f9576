"""Stage 1, the project: experiment files read and validated, data sets, settings."""
