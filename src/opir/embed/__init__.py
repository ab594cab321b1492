"""Embed (``workflow/rules/embed.smk``): molecule embeddings (UniMol, or a descriptor fallback) and mixture embeddings
of electrolyte recipes."""
