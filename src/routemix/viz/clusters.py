"""Figures of clusters (filled in by issue 5)."""

FIGURES: list = []
