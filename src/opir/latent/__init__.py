"""Latent (``workflow/rules/latent.smk``): the VAE trained (or loaded) and the waveform and variation images encoded."""
