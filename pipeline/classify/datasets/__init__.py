"""Training data: the source registry (data/sources.yaml) and the task tables built from it."""
