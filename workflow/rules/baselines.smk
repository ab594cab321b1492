# Rules of the baselines stage (see src/opir/baselines.py).
