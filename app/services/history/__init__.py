"""The read side: image and defect queries, dashboard aggregates, downloads and ZIP exports."""
