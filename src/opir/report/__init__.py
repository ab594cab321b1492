"""Report (``workflow/rules/report.smk``): every figure and table page; the only package that plots."""
