# Rules of the report stage (see src/opir/ for the logic).
