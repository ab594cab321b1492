# Rules of the predict stage (see src/opir/ for the logic).
