"""Training: the arguments, one module per recipe, and the run that writes a versioned model."""
