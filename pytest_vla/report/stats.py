"""How sure a success rate is: 95% Wilson score intervals (scipy's, not a formula of our own).

Wilson's interval keeps its coverage at the small counts LIBERO runs have per task (3 to 50
episodes) and at rates near 0 or 1, where the normal approximation gives intervals outside [0, 1]
or of zero width.
"""

from __future__ import annotations

from scipy.stats import binomtest

CONFIDENCE = 0.95


def wilson_interval(n_success: int, n_total: int) -> tuple[float, float] | None:
    """The 95% Wilson interval of ``n_success`` in ``n_total``; ``None`` when nothing was counted."""
    if n_total == 0:
        return None
    interval = binomtest(n_success, n_total).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return float(interval.low), float(interval.high)
