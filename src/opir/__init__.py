"""OpIR: operando infrared spectroscopy of battery interphases, from OPUS files to ABCC and OpIRBench."""

__version__ = "0.1.0"
