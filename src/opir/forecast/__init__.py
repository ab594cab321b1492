"""``opir predict``: one static spectrum + a voltage profile + an electrolyte recipe -> a predicted operando sequence
with uncertainty bands."""
