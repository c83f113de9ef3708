"""The inspection workflow: receiving uploads, inference and storing results, the batch queue."""
