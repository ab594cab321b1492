# Rules of the neural baselines (see src/opir/models/neural_baselines.py).
