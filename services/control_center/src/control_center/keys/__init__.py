"""keys slice."""
