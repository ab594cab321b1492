"""Predict (``workflow/rules/predict.smk``): trained ABCC models to the predictions file."""
