"""Hot-folder ingestion: image files that appear in a watched folder are inspected."""
