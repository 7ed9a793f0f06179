"""leadflow's Prefect flows: one module per flow, each composing tasks and subflows."""
