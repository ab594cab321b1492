"""Figures, one module per stage that owns them (data, render, mcr, models, report)."""
