"""Train (``workflow/rules/train.smk``): ABCC's data, read-out and training (the loop itself: :mod:`opir.training`)."""
