"""Model answers other than the primary one (shadow runs, replays) and the comparison of
model versions by the reviewers' verdicts (docs/models.md)."""
