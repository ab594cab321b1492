# Rules of the embed stage (see src/opir/ for the logic).
