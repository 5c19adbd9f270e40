"""The rollout on one process (an xdist worker, or the single process): episodes run and turned into rows."""
