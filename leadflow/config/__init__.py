"""Settings from the environment and versioned business policies."""
