"""Simulate (``workflow/rules/simulate.smk``): OpIRSpec-7K-sim, operando runs written as real OPUS files and
potentiostat logs, and the static calibration set."""
