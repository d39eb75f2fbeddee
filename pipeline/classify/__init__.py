"""Topic and sentiment classification with a fine-tuned decoder-only LM."""
