"""Sweeps: a whole study as one file. ``spec`` expands and validates the grid (torch-free);
``table`` aggregates the finished runs of each arm."""
