"""Neural baselines (``workflow/rules/neural_baselines.smk``): SiT regression and flow matching on latents, a GRU
forecaster and a trajectory flow on spectra."""
