"""Baselines (``workflow/rules/baselines.smk``): the reference rows and the pooled regression baselines."""
