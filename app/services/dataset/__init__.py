"""The training-set export: inputs, label masks and COCO files from the reviewers'
verdicts, split by lot or day, with a manifest of SHA-256 hashes (docs/dataset.md)."""
