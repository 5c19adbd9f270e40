"""How sure a success rate is, and whether two policies differ: intervals, paired tests and power.

Rates get 95% Wilson score intervals (scipy's, not a formula of our own).

Wilson's interval keeps its coverage at the small counts LIBERO runs have per task (3 to 50
episodes) and at rates near 0 or 1, where the normal approximation gives intervals outside [0, 1]
or of zero width.

Two policies run on the same (task, init state, seed) give paired outcomes: the exact McNemar test
of the discordant pairs has far more power than comparing two rates, and its power says how large
a difference a run could have found at all.

Repeated trials of one init state (``--vla-repeat``) are correlated: a policy that fails an init
state once mostly fails it again. Their intervals and tests count init states as the independent
units (clusters), so K repeats of a deterministic policy are worth no more than one trial.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import ModuleType

    import numpy as np

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
POWER = 0.8  # the power at which a difference counts as detectable
FFT_ABOVE = 10**7  # a convolution of more products than this goes through the FFT


def scipy_stats() -> ModuleType:
    """scipy.stats, imported on first use: its import takes 0.6 s and 60 MiB, and every process of a run
    (the controller, each worker, the preflight) imports this module, while only the controller's
    summary and ``compare`` compute with it."""
    import scipy.stats

    return scipy.stats


def wilson_interval(n_success: int, n_total: int) -> tuple[float, float] | None:
    """The 95% Wilson interval of ``n_success`` in ``n_total``; ``None`` when nothing was counted."""
    if n_total == 0:
        return None
    interval = scipy_stats().binomtest(n_success, n_total).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return float(interval.low), float(interval.high)


def clustered_interval(clusters: Sequence[tuple[int, int]]) -> tuple[float, float, float] | None:
    """The 95% interval of a success rate pooled over clusters of correlated trials, and its effective size.

    ``clusters`` holds (successes, trials) per init state. The rate is successes over trials; its
    interval is Wilson's at the Kish effective sample size: trials divided by the design effect,
    the cluster-robust (ratio-estimator) variance of the rate over the binomial one, kept within
    [init states, trials]. It is the plain Wilson interval when each init state has one trial, the
    Wilson interval over init states when their trials all agree, closed form and deterministic
    (a cluster bootstrap is random and, like a beta-binomial fit, collapses at a rate of 0 or 1).
    At a rate of 0 or 1 the correlation cannot be estimated: init states count, the safe side.
    ``None`` when nothing was counted.
    """
    m = len(clusters)
    total = sum(trials for _, trials in clusters)
    if total == 0:
        return None
    successes = sum(success for success, _ in clusters)
    rate = successes / total
    if total == m:
        low, high = wilson_interval(successes, total) or (0.0, 1.0)
        return low, high, float(total)
    if m == 1 or rate in (0.0, 1.0):
        effective = float(m)
    else:
        variance = m / (m - 1) * math.fsum((success - rate * trials) ** 2 for success, trials in clusters) / total**2
        design_effect = variance / (rate * (1 - rate) / total)
        effective = min(max(total / design_effect, float(m)), float(total)) if design_effect > 0 else float(total)
    low, high = _wilson(rate, effective)
    return low, high, effective


def _wilson(rate: float, n: float) -> tuple[float, float]:
    """Wilson's score interval at a real-valued sample size (an effective one), which scipy's takes only as counts."""
    z = float(scipy_stats().norm.ppf(1 - ALPHA / 2))
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n))
    return max(centre - half, 0.0), min(centre + half, 1.0)


def pass_at_k(clusters: Sequence[tuple[int, int]], k: int) -> float | None:
    """The chance that at least one of k trials of an init state succeeds, averaged over init states.

    The unbiased estimator 1 - C(n-c, k)/C(n, k) per init state of c successes in n >= k trials
    (Chen et al. 2021); init states with fewer than k trials are left out, ``None`` without any.
    """
    estimates = [1 - math.comb(n - c, k) / math.comb(n, k) for c, n in clusters if n >= k]
    return math.fsum(estimates) / len(estimates) if estimates else None


def pass_hat_k(clusters: Sequence[tuple[int, int]], k: int) -> float | None:
    """The chance that all k trials of an init state succeed (pass^k), averaged over init states.

    The unbiased estimator C(c, k)/C(n, k) per init state of c successes in n >= k trials (Yao et
    al. 2024, tau-bench); init states with fewer than k trials are left out, ``None`` without any.
    """
    estimates = [math.comb(c, k) / math.comb(n, k) for c, n in clusters if n >= k]
    return math.fsum(estimates) / len(estimates) if estimates else None


def mean_interval(clusters: Sequence[Sequence[float]]) -> tuple[float, float] | None:
    """The 95% t interval of the mean of values in [0, 1] (progress), clipped to [0, 1], over clusters of them.

    ``clusters`` holds each init state's values: one each without repeated trials, where this is
    the Student t interval. With repeats the variance is the cluster-robust one of the pooled mean
    (init states as clusters, m - 1 degrees of freedom), so correlated trials do not narrow it.
    ``None`` under two init states. Of zero width when all are equal: read the success rate's
    interval then (a run where every episode got equally far is mostly all successes or all none).
    """
    m = len(clusters)
    if m < 2:
        return None
    total = sum(len(values) for values in clusters)
    mean = math.fsum(value for values in clusters for value in values) / total
    variance = m / (m - 1) * math.fsum((math.fsum(values) - mean * len(values)) ** 2 for values in clusters) / total**2
    half = _t_quantile(m - 1) * math.sqrt(variance)
    return max(mean - half, 0.0), min(mean + half, 1.0)


def signed_rank_p_value(differences: Sequence[float]) -> float:
    """The two-sided Wilcoxon signed-rank test's p-value of paired differences (scipy's, zeros ranked by Pratt).

    Paired progress (two policies from the same task, init state and seed) is bounded and tied, not
    normal: a rank test of its differences, not a t test. 1.0 where no pair differs.
    """
    if not any(differences):
        return 1.0
    return float(scipy_stats().wilcoxon(differences, zero_method="pratt").pvalue)


@functools.lru_cache(maxsize=256)
def _t_quantile(degrees_of_freedom: int) -> float:
    return float(scipy_stats().t.ppf(1 - ALPHA / 2, degrees_of_freedom))


@dataclass(frozen=True)
class PairedCounts:
    """Outcomes of episodes run by two policies from the same (task, init state, seed): a 2x2 table."""

    both: int
    only_base: int
    only_new: int
    neither: int

    @property
    def n_pairs(self) -> int:
        return self.both + self.only_base + self.only_new + self.neither

    @property
    def base_successes(self) -> int:
        return self.both + self.only_base

    @property
    def new_successes(self) -> int:
        return self.both + self.only_new

    @property
    def discordant(self) -> int:
        return self.only_base + self.only_new

    @property
    def difference(self) -> float:
        """NEW's success rate minus BASE's."""
        return (self.only_new - self.only_base) / self.n_pairs if self.n_pairs else 0.0

    def __add__(self, other: PairedCounts) -> PairedCounts:
        return PairedCounts(
            self.both + other.both,
            self.only_base + other.only_base,
            self.only_new + other.only_new,
            self.neither + other.neither,
        )


def mcnemar_p_value(counts: PairedCounts) -> float:
    """The exact two-sided McNemar test: a binomial test of the discordant pairs against 1/2."""
    if counts.discordant == 0:
        return 1.0
    return float(scipy_stats().binomtest(counts.only_new, counts.discordant, 0.5).pvalue)


def clustered_mcnemar_p_value(differences: Sequence[int]) -> float:
    """McNemar's exact test over clusters of pairs: an exact sign-flip test of each init state's difference.

    ``differences`` holds, per init state, the pairs only NEW succeeded in minus those only BASE
    did, over its trials. Under no difference each init state's sign is a fair coin, so the
    p-value is the share of the 2^m sign patterns whose total is at least as far from 0 as the
    one seen, computed exactly (a convolution per distinct size). With one pair per init state it
    is exactly :func:`mcnemar_p_value`; with repeated trials it does not count correlated pairs
    as independent evidence, as McNemar's test of all pairs would.
    """
    sizes: dict[int, int] = {}
    for difference in differences:
        if difference:
            sizes[abs(difference)] = sizes.get(abs(difference), 0) + 1
    if not sizes:
        return 1.0
    import numpy as np
    from scipy.signal import fftconvolve

    binom = scipy_stats().binom
    # The distribution of X, the total size of the init states whose sign is +: the statistic is 2X - T.
    distribution = np.ones(1)
    for size, count in sizes.items():
        spread = np.zeros(size * count + 1)
        spread[::size] = binom.pmf(np.arange(count + 1), count, 0.5)
        # Exact sums while small; past that the FFT's (errors of 1e-16, far below any alpha), or the
        # cost grows with the square of the total (a report's rows are anyone's).
        if len(distribution) * len(spread) <= FFT_ABOVE:
            distribution = np.convolve(distribution, spread)
        else:
            distribution = np.clip(fftconvolve(distribution, spread), 0.0, None)
    total = sum(size * count for size, count in sizes.items())
    observed = abs(sum(differences))
    statistic = np.abs(2 * np.arange(total + 1) - total)
    return float(min(1.0, distribution[statistic >= observed].sum()))


def paired_difference_interval(counts: PairedCounts, effective: float | None = None) -> tuple[float, float] | None:
    """The 95% interval of the paired difference: Bonett and Price's adjusted Wald interval (2012).

    One pseudo-pair is added to each discordant cell, so the interval keeps a width when no pair
    is discordant, where the Wald interval and Newcombe's score-based one collapse to a point;
    Bonett and Price show it keeps its coverage down to a few pairs. ``effective`` (from
    :func:`effective_pairs`) stands in for the pairs where trials repeat: the cells are scaled to it.
    """
    if counts.n_pairs == 0:
        return None
    scale = (effective or counts.n_pairs) / counts.n_pairs
    n = scale * counts.n_pairs + 2
    only_new, only_base = (scale * counts.only_new + 1) / n, (scale * counts.only_base + 1) / n
    centre = only_new - only_base
    half = float(scipy_stats().norm.ppf(1 - ALPHA / 2)) * math.sqrt((only_new + only_base - centre**2) / n)
    return max(centre - half, -1.0), min(centre + half, 1.0)


def effective_pairs(counts: PairedCounts, clusters: Sequence[tuple[int, int]]) -> float:
    """How many independent pairs ``counts`` are worth when they come in clusters of correlated trials.

    ``clusters`` holds (NEW-only minus BASE-only pairs, pairs) per init state. As for a success rate
    (:func:`clustered_interval`): the pairs over the design effect, the cluster-robust variance of
    the mean difference over the one of independent pairs, kept within [init states, pairs]; init
    states where no pair is discordant (nothing to estimate a correlation from).
    """
    m, total = len(clusters), counts.n_pairs
    if total == m:
        return float(total)
    difference = counts.difference
    independent = ((counts.only_new + counts.only_base) / total - difference**2) / total
    if m == 1 or independent <= 0:
        return float(m)
    robust = m / (m - 1) * math.fsum((d - difference * n) ** 2 for d, n in clusters) / total**2
    return min(max(total * independent / robust, float(m)), float(total)) if robust > 0 else float(total)


def mcnemar_power(difference: float, n_pairs: int, discordance: float) -> float:
    """The exact McNemar test's power to find ``difference`` in ``n_pairs`` pairs with this share of discordant pairs.

    Exact, not the normal approximation, which promises power at 4 pairs where the exact test
    cannot reject below 6 discordant pairs. The number of discordant pairs is binomial; given it,
    the pairs favouring NEW are binomial with share (discordance + difference) / (2 discordance).
    """
    discordance = min(max(discordance, abs(difference)), 1.0)
    if n_pairs == 0 or discordance == 0.0:
        return 0.0
    import numpy as np  # with scipy: readers of reports that never compare do not pay for it

    discordant = np.arange(n_pairs + 1)
    critical = _critical_counts(n_pairs)
    favouring_new = (discordance + difference) / (2 * discordance)
    binom = scipy_stats().binom
    rejects = binom.sf(critical - 1, discordant, favouring_new)
    rejects += binom.cdf(discordant - critical, discordant, favouring_new)
    return float(np.sum(binom.pmf(discordant, n_pairs, discordance) * rejects))


def _critical_counts(n_pairs: int) -> np.ndarray:
    """For 0..n_pairs discordant pairs, the fewest favouring one side that the two-sided test rejects at alpha."""
    return _critical_counts_up_to(1 << n_pairs.bit_length())[: n_pairs + 1]


@functools.cache
def _critical_counts_up_to(size: int) -> np.ndarray:
    # binom.ppf searches per element: computed once per power of two, sliced for every n below it.
    import numpy as np

    return scipy_stats().binom.ppf(1 - ALPHA / 2, np.arange(size + 1), 0.5) + 1


def detectable_difference(n_pairs: int, discordance: float) -> float:
    """The smallest difference these pairs detect with 80% power (1.0 when none can be)."""
    if mcnemar_power(1.0, n_pairs, discordance) < POWER:
        return 1.0
    low, high = 0.0, 1.0
    while high - low > 1e-4:
        middle = (low + high) / 2
        low, high = (middle, high) if mcnemar_power(middle, n_pairs, discordance) < POWER else (low, middle)
    return high


def pairs_needed(difference: float, discordance: float) -> int:
    """How many pairs would detect ``difference`` with 80% power, at the discordance seen so far."""
    if difference <= 0.0:
        raise ValueError("a difference of 0 cannot be detected")
    low, high = 1, 2
    while mcnemar_power(difference, high, discordance) < POWER:
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if mcnemar_power(difference, middle, discordance) < POWER else (low, middle)
    return high


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: the family-wise error stays at alpha over all the tests.

    scipy offers only the false-discovery-rate adjustments (``false_discovery_control``); Holm
    controls the stronger family-wise error, which a regression gate over many tasks needs.
    """
    order = sorted(range(len(p_values)), key=lambda index: p_values[index])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted
