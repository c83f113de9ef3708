"""Where inputs, result images, analysis JSON and thumbnails are kept."""
