# Rules of the evaluate stage (see src/opir/ for the logic).
