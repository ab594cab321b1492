"""Shared by every stage: errors, logging, config and sheet validation (schemas ship with the package), HDF5 writing
with provenance, compute devices."""
