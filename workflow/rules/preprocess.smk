# Rules of the preprocess stage (see src/opir/ for the logic).
