"""Retention: old inspections deleted (files and rows) and finished queue jobs pruned."""
