# Rules of the simulate stage (see src/opir/ for the logic).
