"""Company-level sentiment: the entity catalogue, linking stories to companies, per-entity labels."""
