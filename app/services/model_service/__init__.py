"""The model service: the HTTP client the agent uses, and the launcher of the reference service."""
