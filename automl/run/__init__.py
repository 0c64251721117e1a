"""A search and its run directory: the orchestrator, the typed documents, the files, the
progress display and the report page."""
