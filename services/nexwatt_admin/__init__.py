"""One-shot operations: create the registry's topics, export the schemas, list, show and replay
dead letters."""
