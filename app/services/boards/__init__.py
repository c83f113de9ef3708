"""Board identity and traceability: the context of inspections, board timelines, yield."""
