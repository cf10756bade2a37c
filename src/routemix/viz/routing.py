"""Figures of routing (filled in by issue 5)."""

FIGURES: list = []
