# Rules of the latent stage (see src/opir/ for the logic).
