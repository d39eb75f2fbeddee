"""Evaluation: held-out reports, peer baselines, the model card."""
