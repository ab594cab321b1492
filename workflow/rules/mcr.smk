# Rules of the mcr stage (see src/opir/ for the logic).
