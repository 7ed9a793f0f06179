"""How leadflow is run: the `leadflow` command, serving and deployment helpers."""
