"""``pytest-vla serve``: an export served to vla-eval's clients and pytest-vla's, several clients batched."""
