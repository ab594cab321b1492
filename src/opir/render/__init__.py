"""Render (``workflow/rules/render.smk``): spectra to waveform images (Alg. 1), Chemical Flow images (Alg. 2) and
variation images."""
