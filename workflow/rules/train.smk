# Rules of the train stage (see src/opir/ for the logic).
