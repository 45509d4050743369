"""policies slice."""
