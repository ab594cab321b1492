# Rules of the ingest stage (see src/opir/ for the logic).
