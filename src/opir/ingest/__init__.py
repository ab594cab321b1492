"""Ingest (``workflow/rules/ingest.smk``): raw operando runs to one HDF5 file per run."""
