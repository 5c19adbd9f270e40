"""Is NEW better than BASE? Two reports' episodes paired, then tested per task, per family and overall.

An episode is a function of (export, protocol, seed, task, episode, trial), so two runs of two
exports under one protocol and seed start every episode from the same state: their outcomes are
pairs. A perturbed task (LIBERO-PRO) names its clean counterpart in the report, and pairs with it
the same way, so a clean run against a perturbed one measures the robustness drop.

Repeated trials (``--vla-repeat``) pair trial by trial, and the pairs of one init state form a
cluster: the tests count init states as the independent units, not pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, NamedTuple

from pytest_vla.errors import ReportError, printable, short_repr
from pytest_vla.report.layout import REPORT_NAME
from pytest_vla.report.reader import load_report
from pytest_vla.report.schema import TerminalReason, task_key
from pytest_vla.report.stats import (
    ALPHA,
    POWER,
    PairedCounts,
    clustered_mcnemar_p_value,
    detectable_difference,
    effective_pairs,
    holm,
    mcnemar_p_value,
    paired_difference_interval,
    pairs_needed,
    signed_rank_p_value,
)

DEFAULT_MARGIN_PP = 5.0
# Protocol keys that differ between two policies without changing what an episode is: how the
# policy is reached and what it reads are the policy's side of the comparison.
_POLICY_SIDE_KEYS = frozenset({"num_episodes_per_task", "cameras_rendered", "policy_client"})

TaskRef = tuple[str, int]  # (family, task index)
InitState = tuple[TaskRef, int]  # NEW's (task, episode index): what the pairs of its trials share


class Pairing(NamedTuple):
    """What a comparison row pairs: a task with a task, a family with a family, or everything (all None)."""

    family: str | None  # NEW's
    task_index: int | None  # None for a family or overall
    base_family: str | None  # BASE's, which differs from NEW's when a perturbed task meets its clean one
    base_task_index: int | None

    @property
    def label(self) -> str:
        if self.family is None or self.base_family is None:
            return "overall"
        name = self.family if self.task_index is None else task_key(self.family, self.task_index)
        base = self.base_family if self.base_task_index is None else task_key(self.base_family, self.base_task_index)
        return name if name == base else f"{name} vs {base}"


class Verdict(str, Enum):
    IMPROVED = "IMPROVED"  # NEW is significantly better, by more than the margin
    REGRESSED = "REGRESSED"  # NEW is significantly worse, by more than the margin
    HELD = "HELD"  # no difference beyond the margin, and these pairs could have found one
    UNDERPOWERED = "UNDERPOWERED"  # too few pairs to find a difference the size of the margin


@dataclass(frozen=True)
class ComparisonRow:
    """One line of a comparison: a task pair, a family pair, or everything."""

    scope: str  # "task", "family" or "overall"
    pairing: Pairing
    counts: PairedCounts
    init_states: int  # the init states the pairs come from: fewer than the pairs where trials repeat
    interval: tuple[float, float]  # the paired difference's 95% interval
    p_value: float  # the exact McNemar test's (its clustered form where trials repeat)
    p_adjusted: float  # after Holm's adjustment over the rows of this scope; the verdict's
    detectable: float  # the smallest difference these pairs find with 80% power
    pairs_needed: int | None  # pairs (init states where trials repeat) that find the margin with 80% power
    verdict: Verdict
    progress: ProgressDifference | None  # where both sides' suite gives progress

    @property
    def repeated(self) -> bool:
        """Its pairs come from repeated trials: p, the power and the interval count init states."""
        return self.init_states < self.counts.n_pairs

    def to_json(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "label": self.pairing.label,
            **self.pairing._asdict(),
            "n_pairs": self.counts.n_pairs,
            "n_init_states": self.init_states,
            "base_successes": self.counts.base_successes,
            "new_successes": self.counts.new_successes,
            "only_base": self.counts.only_base,
            "only_new": self.counts.only_new,
            "difference": round(self.counts.difference, 6),
            "ci95": [round(bound, 6) for bound in self.interval],
            "p_value": self.p_value,
            "p_adjusted": self.p_adjusted,
            "detectable_difference": round(self.detectable, 4),
            "pairs_needed": self.pairs_needed,
            "verdict": self.verdict.value,
            "progress": self.progress.to_json() if self.progress else None,
        }


@dataclass
class InitStatePairs:
    """The pairs of one init state in a row: its trials, correlated with each other."""

    pairs: int = 0
    difference: int = 0  # pairs only NEW won minus pairs only BASE won
    progress: list[float] = field(default_factory=list)  # NEW's progress minus BASE's, per pair that has both


@dataclass
class PairCell:
    """The pairs of one comparison row, as counts and per init state."""

    counts: PairedCounts = field(default_factory=lambda: PairedCounts(0, 0, 0, 0))
    init_states: dict[InitState, InitStatePairs] = field(default_factory=dict)

    def add(self, init_state: InitState, pair: PairedCounts, progress: float | None) -> None:
        self.counts += pair
        cluster = self.init_states.setdefault(init_state, InitStatePairs())
        cluster.pairs += 1
        cluster.difference += pair.only_new - pair.only_base
        if progress is not None:
            cluster.progress.append(progress)

    def absorb(self, other: PairCell) -> None:
        self.counts += other.counts
        self.init_states.update(other.init_states)

    @property
    def repeated(self) -> bool:
        """Some init state holds several pairs (trials): the tests then count init states, not pairs."""
        return len(self.init_states) < self.counts.n_pairs


@dataclass(frozen=True)
class ProgressDifference:
    """How much further NEW got than BASE on the same pairs: mean paired difference in progress, and its test."""

    n_pairs: int
    difference: float  # mean of NEW's progress minus BASE's, over the pairs
    p_value: float  # two-sided Wilcoxon signed-rank

    @classmethod
    def of(cls, cell: PairCell) -> ProgressDifference | None:
        """The pairs' mean difference; the test ranks each init state's mean difference (its trials are one unit)."""
        progress = [cluster.progress for cluster in cell.init_states.values() if cluster.progress]
        pairs = [difference for differences in progress for difference in differences]
        if not pairs:
            return None
        by_init_state = [sum(differences) / len(differences) for differences in progress]
        return cls(len(pairs), sum(pairs) / len(pairs), signed_rank_p_value(by_init_state))

    def to_json(self) -> dict[str, Any]:
        return {"n_pairs": self.n_pairs, "difference": round(self.difference, 6), "p_value": self.p_value}


@dataclass(frozen=True)
class Comparison:
    base: str  # where BASE was read from
    new: str
    margin: float  # a fraction: 0.05 for 5 points
    rows: list[ComparisonRow]  # tasks, then families, then overall
    excluded: int  # pairs left out: a harness error on either side, so one outcome was not measured
    unpaired: int  # episodes of either report without a partner in the other
    reused: bool  # some BASE episode pairs with several of NEW's (a clean one with each of its perturbations)

    @property
    def overall(self) -> ComparisonRow:
        return self.rows[-1]

    def to_json(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "new": self.new,
            "margin_pp": round(100 * self.margin, 4),
            "alpha": ALPHA,
            "power": POWER,
            "test": "exact McNemar (two-sided binomial test of the discordant pairs); where trials repeat, its "
            "clustered form (exact sign-flip test of each init state's difference)",
            "interval": "Bonett-Price adjusted Wald, 95%; where trials repeat, at the effective number of pairs",
            "adjustment": "Holm, over the task rows and over the family rows",
            "progress_test": "Wilcoxon signed-rank of the paired progress differences (Pratt's zeros), two-sided; "
            "of each init state's mean difference where trials repeat",
            "excluded_pairs": self.excluded,
            "unpaired_episodes": self.unpaired,
            "base_episodes_reused": self.reused,
            "verdict": self.overall.verdict.value,
            "rows": [row.to_json() for row in self.rows],
        }


def read_comparable(path: Path) -> dict[str, Any]:
    """A report.json, or the one in a run's output directory, loaded (checked) by :func:`load_report`."""
    return load_report(path / REPORT_NAME if path.is_dir() else path)


def check_comparable(base: dict[str, Any], new: dict[str, Any]) -> dict[TaskRef, TaskRef]:
    """NEW's tasks -> the BASE tasks they pair with; raise ``ReportError`` naming what makes them incomparable.

    Both are reports as :func:`load_report` returns them (or as the writer builds them): well formed.

    Called before a run's first episode (``--vla-baseline``) as well as on two finished reports.
    """
    for key in ("suite", "seed"):
        if base.get(key) != new.get(key):
            raise ReportError(f"BASE was run with {key} {base.get(key)!r}, NEW with {key} {new.get(key)!r}: not paired")
    base_protocol, new_protocol = base["protocol"], new["protocol"]
    for key in sorted((base_protocol.keys() | new_protocol.keys()) - _POLICY_SIDE_KEYS):
        if base_protocol.get(key) != new_protocol.get(key):
            raise ReportError(
                f"BASE and NEW ran under different protocols: {key} is {short_repr(base_protocol.get(key))} in BASE, "
                f"{short_repr(new_protocol.get(key))} in NEW"
            )
    base_tasks, new_tasks = _tasks(base), _tasks(new)
    partners: dict[TaskRef, TaskRef] = {}
    for task, (_, clean) in new_tasks.items():
        partner = task if task in base_tasks else clean if clean in base_tasks else None
        if partner is not None:
            partners[task] = partner
    for task, (_, clean) in base_tasks.items():  # a perturbed BASE against a clean NEW
        if clean in new_tasks and clean not in partners and clean not in base_tasks:
            partners[clean] = task
    if not partners:
        raise ReportError(
            f"no task of NEW ({_names(new_tasks)}) is a task of BASE ({_names(base_tasks)}) or its clean counterpart"
        )
    for task, partner in partners.items():
        if new_tasks[task][0] != base_tasks[partner][0]:
            raise ReportError(
                f"{task_key(*task)}: step budget {new_tasks[task][0]} in NEW, {base_tasks[partner][0]} in BASE "
                f"({task_key(*partner)}): not paired"
            )
    return partners


def compare(base: dict[str, Any], new: dict[str, Any], *, margin: float, base_name: str, new_name: str) -> Comparison:
    partners = check_comparable(base, new)
    base_rows = {_ref_episode(row): row for row in base["episodes"]}
    cells: dict[tuple[TaskRef, TaskRef], PairCell] = {}
    excluded = 0
    partnered: set[tuple[TaskRef, int, int]] = set()  # BASE's episodes that pair with one of NEW's, or more
    unpaired = paired = 0
    for row in new["episodes"]:
        task, episode, trial = (row["task_id"], row["task_index"]), row["episode_index"], row.get("trial", 0)
        partner = partners.get(task)
        base_row = base_rows.get((partner, episode, trial)) if partner else None
        if partner is None or base_row is None:
            unpaired += 1
            continue
        partnered.add((partner, episode, trial))
        paired += 1
        if _unmeasured(row) or _unmeasured(base_row):
            excluded += 1
            continue
        pair = PairedCounts(
            both=int(row["success"] and base_row["success"]),
            only_base=int(base_row["success"] and not row["success"]),
            only_new=int(row["success"] and not base_row["success"]),
            neither=int(not row["success"] and not base_row["success"]),
        )
        progress = None
        if isinstance(row.get("progress"), float | int) and isinstance(base_row.get("progress"), float | int):
            progress = float(row["progress"]) - float(base_row["progress"])
        cells.setdefault((task, partner), PairCell()).add((task, episode), pair, progress)
    if not cells:
        raise ReportError("no finished episode of NEW has a measured partner in BASE (same task and episode index)")
    unpaired += len(base_rows.keys() - partnered)
    families: dict[tuple[str, str], PairCell] = {}
    overall = PairCell()
    for (task, partner), cell in cells.items():
        families.setdefault((task[0], partner[0]), PairCell()).absorb(cell)
        overall.absorb(cell)
    task_cells = [(Pairing(*task, *partner), cell) for (task, partner), cell in sorted(cells.items())]
    rows = _scope_rows("task", task_cells, margin)
    family_cells = [(Pairing(new_f, None, base_f, None), cell) for (new_f, base_f), cell in families.items()]
    rows += _scope_rows("family", family_cells, margin)
    rows += _scope_rows("overall", [(Pairing(None, None, None, None), overall)], margin)
    return Comparison(base_name, new_name, margin, rows, excluded, unpaired, reused=paired > len(partnered))


def verdict(counts: PairedCounts, p_adjusted: float, detectable: float, margin: float) -> Verdict:
    """Significant beyond the margin either way, else whether these pairs could have found the margin at all."""
    if p_adjusted < ALPHA and counts.difference > margin:
        return Verdict.IMPROVED
    if p_adjusted < ALPHA and counts.difference < -margin:
        return Verdict.REGRESSED
    if p_adjusted >= ALPHA and detectable > margin:
        return Verdict.UNDERPOWERED
    return Verdict.HELD


def comparison_lines(comparison: Comparison) -> list[str]:
    """The table and the verdict, as ``pytest-vla compare`` and a run's ``--vla-baseline`` summary print them."""
    width = max(len(row.pairing.label) for row in comparison.rows)
    lines = [
        f"{'':<{width}} {'pairs':>5} {'base':>7} {'new':>7} {'diff pp':>8} {'95% interval':>16} "
        f"{'-base':>5} {'+new':>5} {'p':>7} {'p holm':>7}  verdict"
    ]
    for before, row in zip([None, *comparison.rows], comparison.rows, strict=False):
        if before is not None and before.scope != row.scope:
            lines.append("")
        lines.append(_row_line(row, width))
    lines.append("")
    lines.append(
        f"-base/+new: pairs only BASE / only NEW succeeded; p: exact McNemar; p holm: Holm-adjusted over the "
        f"task rows ({_count(comparison, 'task')}) and over the family rows ({_count(comparison, 'family')}); "
        f"margin {100 * comparison.margin:g} pp"
    )
    if comparison.overall.progress is not None:
        lines.append(
            "progress: NEW's mean progress minus BASE's over the pairs where both have one, in pp of the goal; "
            "p: Wilcoxon signed-rank (not Holm-adjusted; the verdict is the success rate's)"
        )
    if any(row.repeated for row in comparison.rows):
        lines.append(
            "repeated trials: each init state's pairs count as one unit in p (an exact sign-flip test of its "
            "trials' difference) and in the power, so correlated trials are not counted as independent evidence"
        )
    if comparison.excluded or comparison.unpaired:
        lines.append(
            f"left out: {comparison.excluded} pairs with a harness error on either side, "
            f"{comparison.unpaired} episodes without a partner"
        )
    if comparison.reused:
        lines.append(
            "a BASE episode stands in several pairs here (a clean episode for each of its perturbations): the overall "
            "row pools pairs that are not independent, so judge each perturbation by its family row"
        )
    lines.append(verdict_line(comparison))
    return [printable(line) for line in lines]  # task labels come from the reports


def verdict_line(comparison: Comparison) -> str:
    row = comparison.overall
    said = (
        f"{row.verdict.value}: NEW {_pp(row.counts.difference)} pp vs BASE "
        f"[{_pp(row.interval[0])}, {_pp(row.interval[1])}], p={row.p_value:.3g} over {row.counts.n_pairs} pairs"
    )
    if row.verdict is Verdict.UNDERPOWERED:
        said += f"; these pairs find only a difference of {100 * row.detectable:.0f} pp or more with 80% power"
        if row.pairs_needed is not None:
            units = "init states" if row.repeated else "pairs (episodes on each side)"
            said += f", about {row.pairs_needed} {units} would settle a {100 * comparison.margin:g} pp difference"
    return said


def _scope_rows(scope: str, cells: list[tuple[Pairing, PairCell]], margin: float) -> list[ComparisonRow]:
    """The rows of one scope; every cell holds at least one pair."""
    p_values = [_p_value(cell) for _, cell in cells]
    rows = []
    for (pairing, cell), p_value, p_adjusted in zip(cells, p_values, holm(p_values), strict=True):
        counts = cell.counts
        units, discordant = _units(cell)
        discordance = discordant / units
        detectable = detectable_difference(units, discordance)
        interval = paired_difference_interval(counts, _effective_pairs(cell))
        assert interval is not None  # a cell counts at least one pair
        rows.append(
            ComparisonRow(
                scope=scope,
                pairing=pairing,
                counts=counts,
                init_states=len(cell.init_states),
                interval=interval,
                p_value=p_value,
                p_adjusted=p_adjusted,
                detectable=detectable,
                pairs_needed=pairs_needed(margin, discordance) if margin > 0 else None,
                verdict=verdict(counts, p_adjusted, detectable, margin),
                progress=ProgressDifference.of(cell),
            )
        )
    return rows


def _p_value(cell: PairCell) -> float:
    """McNemar's exact test; over init states (its clustered form) where they hold repeated trials."""
    if cell.repeated:
        return clustered_mcnemar_p_value([cluster.difference for cluster in cell.init_states.values()])
    return mcnemar_p_value(cell.counts)


def _effective_pairs(cell: PairCell) -> float | None:
    """Where trials repeat, the independent pairs the interval counts; None: every pair."""
    if not cell.repeated:
        return None
    return effective_pairs(cell.counts, [(cluster.difference, cluster.pairs) for cluster in cell.init_states.values()])


def _units(cell: PairCell) -> tuple[int, int]:
    """The independent units the power counts, and how many of them are discordant: pairs, or init states.

    With repeated trials each init state counts as one pair, discordant when its trials' pairs do
    not cancel out: right when its trials agree, pessimistic when they are independent.
    """
    if cell.repeated:
        return len(cell.init_states), sum(1 for cluster in cell.init_states.values() if cluster.difference)
    return cell.counts.n_pairs, cell.counts.discordant


def _row_line(row: ComparisonRow, width: int) -> str:
    counts = row.counts
    spread = f"[{_pp(row.interval[0])}, {_pp(row.interval[1])}]"
    progress = row.progress
    further = f"   progress {_pp(progress.difference)} pp p={progress.p_value:.3g}" if progress else ""
    return (
        f"{row.pairing.label:<{width}} {counts.n_pairs:>5} {counts.base_successes:>3}/{counts.n_pairs:<3} "
        f"{counts.new_successes:>3}/{counts.n_pairs:<3} {_pp(counts.difference):>8} {spread:>16} "
        f"{counts.only_base:>5} {counts.only_new:>5} {row.p_value:>7.3g} {row.p_adjusted:>7.3g}  {row.verdict.value}"
        f"{further}"
    )


def _count(comparison: Comparison, scope: str) -> int:
    return sum(row.scope == scope for row in comparison.rows)


def _pp(fraction: float) -> str:
    return f"{100 * fraction:+.1f}"


def _tasks(report: dict[str, Any]) -> dict[TaskRef, tuple[int, TaskRef | None]]:
    """(family, index) -> (step budget, the clean task it perturbs, if it is a perturbed one)."""
    return {
        (entry["task_id"], entry["task_index"]): (entry["max_steps"], _clean(entry.get("clean_task")))
        for entry in report["task_results"]
    }


def _clean(key: str | None) -> TaskRef | None:
    """The task a ``clean_task`` key names (``family:index``, as the report's schema has it)."""
    if key is None:
        return None
    family, _, index = key.rpartition(":")
    return family, int(index)


def _ref_episode(row: dict[str, Any]) -> tuple[TaskRef, int, int]:
    return (row["task_id"], row["task_index"]), row["episode_index"], row.get("trial", 0)


def _unmeasured(row: dict[str, Any]) -> bool:
    return TerminalReason(row["terminal_reason"]).is_harness_error


def _names(tasks: dict[TaskRef, Any]) -> str:
    families = list(dict.fromkeys(family for family, _ in tasks))
    return ", ".join(families[:4]) + (", ..." if len(families) > 4 else "") if families else "no tasks"
