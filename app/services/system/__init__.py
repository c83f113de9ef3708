"""Health and statistics of the agent and the parts it depends on."""
