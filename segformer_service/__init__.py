"""Reference model service: a small ASGI app implementing docs/model-service-contract.md."""
