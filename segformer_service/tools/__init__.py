"""Developer tools of the reference model service (not imported by the service)."""
