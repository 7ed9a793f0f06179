"""Pure pandas rules of the lead lifecycle: no SQL, no Prefect, no files or network."""
