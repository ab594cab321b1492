"""Preprocess (``workflow/rules/preprocess.smk``): spectra on the common grid, the sample table and splits, and the
voltage-profile features every model and baseline reads."""
