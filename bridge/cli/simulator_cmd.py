"""``calbridge simulator``: placeholder, filled in by the simulator work."""
