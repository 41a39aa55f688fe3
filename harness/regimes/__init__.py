"""One module per regime; each returns Predictions."""
