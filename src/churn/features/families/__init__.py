"""features/families."""
