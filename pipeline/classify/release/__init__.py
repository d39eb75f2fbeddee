"""Release: the registry and promotion gate, the shipped delta, the low-rank factors it is made of."""
