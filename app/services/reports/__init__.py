"""Shift and day reports: the figures (`content`), their PDF and XLSX (`render`)."""
