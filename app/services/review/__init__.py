"""Review of inspection results: verdicts, dispositions, the review queue, figures."""
