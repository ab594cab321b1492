"""One reader and one writer per file format, below every stage: OPUS, potentiostat logs, the sample table and splits,
predictions, mixture embeddings, images and latents, model folders."""
