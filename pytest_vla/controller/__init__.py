"""The pytest-facing side: options, preflight, the collection tree, the controller's run, xdist wiring."""
