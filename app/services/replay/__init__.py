"""Replays: stored inputs re-run through another model service, resumable (docs/replay.md)."""
