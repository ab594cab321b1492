"""Models of OpIR: the SiT backbone, MeanFlow, the VAE of waveform images and ABCC (see docs/method.md)."""
