"""Checks of the suite against exact answers and published claims."""
