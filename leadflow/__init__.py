"""leadflow core: settings, CRM schema and store, and the pure lead-lifecycle logic (never imports Prefect)."""
