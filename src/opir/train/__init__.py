"""Train (``workflow/rules/train.smk``): the generic training loop and ABCC's data, read-out and training."""
