"""Signed webhooks (Standard Webhooks) from the transactional outbox (docs/webhooks.md)."""
