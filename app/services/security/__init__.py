"""Security: API keys and their scopes, signed download links, web sessions."""
