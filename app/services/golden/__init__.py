"""The golden-board library: golden (defect-free) board images, matched to each inspected
board and registered once, so the viewer shows every call beside the same spot of the
golden board (docs/golden.md)."""
