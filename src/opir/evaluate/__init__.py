"""Evaluate (``workflow/rules/evaluate.smk``): OpIRBench metrics per model and split, and Tables 2-4."""
