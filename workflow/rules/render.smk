# Rules of the render stage (see src/opir/ for the logic).
