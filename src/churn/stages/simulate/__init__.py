"""stages/simulate."""
