"""MCR (``workflow/rules/mcr.smk``): fixed references from the calibration set, the electrolyte and SEI streams of every
spectrum, their validation against the simulator's truth, and the SEI pathway of Fig. 5."""
