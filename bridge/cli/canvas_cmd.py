"""``calbridge canvas …``: placeholder, filled in by the Canvas client work."""
