"""Reading a report.json back, and deciding whether its rows can stand for episodes of another run.

A report is a file from anyone: :func:`load_report` checks it whole (size, JSON, both schemas,
consistency) before anything indexes it, and refuses it with one line per problem.

A finished episode is a function of (export, protocol, seed, task, episode), so a row of an
earlier run can stand for the same episode of this one (``--vla-resume``, ``--lf``, and later a
merge of shards), provided the export's files and the protocol are the same; anything else is
refused, with the difference named.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pytest_vla.errors import ReportError, read_json, short_repr
from pytest_vla.report.environment import TIMESTAMP_FORMAT
from pytest_vla.report.schema import ONNX_EXPORT, SERVED_POLICY, EpisodeId, EpisodeRow, TaskSpec
from pytest_vla.report.shards import Shard
from pytest_vla.report.writer import Invocation, RunInfo

# The v1 contract, and pytest-vla's additions to it that its readers use: a report must satisfy both.
SCHEMAS = ("report-v1.schema.json", "pytest-vla-report.schema.json")
_MAX_LINES = 20  # problems told; a report broken everywhere is not told row by row
_MAX_MESSAGE = 200
MAX_RUN_EPISODES = 1_000_000  # tasks x episodes a merge lists, one object each; a LIBERO-90 run of 50 has 4500


def load_report(path: Path) -> dict[str, Any]:
    """The report at ``path``, checked against :data:`SCHEMAS` and what a schema cannot say.

    Raises one :class:`ReportError` holding a line per problem (``PATH: /json/pointer: what``) otherwise:
    whatever reads a report may then index it as the writer wrote it.
    """
    report = read_json(path, ReportError)
    problems = list(dict.fromkeys(_schema_problems(report)))
    if not problems:
        problems = list(_inconsistencies(report))
    if problems:
        told = [f"{path}: {problem}" for problem in problems[:_MAX_LINES]]
        if len(problems) > _MAX_LINES:
            told.append(f"{path}: and {len(problems) - _MAX_LINES} more problems")
        raise ReportError(*told)
    return report


def timestamp(text: str) -> dt.datetime:
    """A report's ``started_at`` or ``finished_at`` (UTC, the fraction of a second optional); ValueError else."""
    return dt.datetime.strptime(text, TIMESTAMP_FORMAT if "." in text else TIMESTAMP_FORMAT.replace(".%f", ""))


def row_problems(row: Any) -> list[str]:
    """What keeps ``row`` from being an episode row as a report's rows are checked (a journal's line); empty if none."""
    return [f"{_pointer(error.absolute_path)}: {error.message}" for row_validator in _row_validators()
            for error in row_validator.iter_errors(row)]  # fmt: skip


@cache
def _schemas() -> list[dict[str, Any]]:
    files = resources.files("pytest_vla.report")
    return [json.loads(files.joinpath(name).read_text(encoding="utf-8")) for name in SCHEMAS]


@cache
def _validators() -> list[Any]:
    import jsonschema  # only when a report is read: the plugin's import stays cheap

    return [jsonschema.validators.validator_for(schema)(schema) for schema in _schemas()]


@cache
def _row_validators() -> list[Any]:
    """Each schema's episode row on its own, with the definitions it refers to."""
    import jsonschema

    rows = []
    for schema in _schemas():
        row = {
            "$schema": schema["$schema"],
            "$defs": schema.get("$defs", {}),
            **schema["properties"]["episodes"]["items"],
        }
        rows.append(jsonschema.validators.validator_for(schema)(row))
    return rows


def _schema_problems(report: Any) -> Iterator[str]:
    for validator in _validators():
        for error in sorted(validator.iter_errors(report), key=_document_order):
            message = error.message if len(error.message) <= _MAX_MESSAGE else error.message[: _MAX_MESSAGE - 3] + "..."
            yield f"{_pointer(error.absolute_path)}: {message}"


def _document_order(error: Any) -> list[tuple[bool, int | str]]:
    """Problems in the order of the file: /episodes/2 before /episodes/10."""
    return [(isinstance(part, str), part) for part in error.absolute_path]


def _pointer(parts: Any) -> str:
    """A JSON pointer (RFC 6901), ``/`` for the document itself."""
    return "/" + "/".join(str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def _inconsistencies(report: dict[str, Any]) -> Iterator[str]:
    """What the schemas cannot say: each episode once and of a listed task, tallies that count the rows."""
    tasks: dict[tuple[str, int], int] = {}
    for position, result in enumerate(report["task_results"]):
        key = (result["task_id"], result["task_index"])
        if key in tasks:
            yield f"/task_results/{position}: repeats the task of /task_results/{tasks[key]}"
        tasks.setdefault(key, position)
    seen: dict[EpisodeId, int] = {}
    for position, row in enumerate(report["episodes"]):
        episode = EpisodeId.of_row(row)
        if episode in seen:
            yield f"/episodes/{position}: repeats the episode of /episodes/{seen[episode]} ({episode.label})"
            continue
        seen[episode] = position
        if (episode.family, episode.task_index) not in tasks:
            yield f"/episodes/{position}: its task {episode.task_key} is not in task_results"
        if episode.trial >= (repeat := report.get("repeat", 1)):
            yield f"/episodes/{position}/trial: {episode.trial} is not below the report's repeat {repeat}"
    for position, entry in enumerate(report["missing_episodes"]):
        if entry.get("trial", 0) >= (repeat := report.get("repeat", 1)):
            yield f"/missing_episodes/{position}/trial: {entry['trial']} is not below the report's repeat {repeat}"
    rows = [report["episodes"][position] for position in seen.values()]
    by_family: dict[str, list[EpisodeRow]] = {}
    by_task: dict[tuple[str, int], list[EpisodeRow]] = {}
    for row in rows:
        by_family.setdefault(row["task_id"], []).append(row)
        by_task.setdefault((row["task_id"], row["task_index"]), []).append(row)
    yield from _tally_problems("/aggregate", report["aggregate"], rows)
    for position, result in enumerate(report["results"]):
        yield from _tally_problems(f"/results/{position}", result, by_family.get(result["task_id"], []))
    for position, result in enumerate(report["task_results"]):
        key = (result["task_id"], result["task_index"])
        yield from _tally_problems(f"/task_results/{position}", result, by_task.get(key, []))
    planned = len(tasks) * report["num_episodes_per_task"] * report.get("repeat", 1)
    if planned > MAX_RUN_EPISODES:
        yield f"/num_episodes_per_task: a run of {planned} episodes, more than {MAX_RUN_EPISODES} are not read"
    shard = report["shard"]
    if shard is not None and shard["index"] >= shard["count"]:
        yield f"/shard: index {shard['index']} is not below count {shard['count']}"
    for key in ("started_at", "finished_at"):
        try:
            timestamp(report[key])
        except ValueError:
            yield f"/{key}: {report[key]!r} is not a time"


def _tally_problems(pointer: str, tally: dict[str, Any], rows: list[EpisodeRow]) -> Iterator[str]:
    n_success = sum(1 for row in rows if row["success"])
    if (tally["n_success"], tally["n_total"]) != (n_success, len(rows)):
        yield f"{pointer}: says {tally['n_success']}/{tally['n_total']}, its episodes are {n_success}/{len(rows)}"
    elif abs(tally["success_rate"] - (n_success / len(rows) if rows else 0.0)) > 1e-6:
        yield f"{pointer}/success_rate: {tally['success_rate']} is not {n_success}/{len(rows)}"


def run_info(report: dict[str, Any]) -> RunInfo:
    """What a loaded ``report`` says about its run besides the rows, as the writer took it."""
    invocation = report["invocation"]
    return RunInfo(
        suite=report["suite"],
        seed=report["seed"],
        tasks=tuple(
            TaskSpec(
                result["task_id"],
                result["task_index"],
                result["instruction"],
                result["max_steps"],
                result.get("clean_task"),
            )
            for result in report["task_results"]
        ),
        num_episodes=report["num_episodes_per_task"],
        repeat=report.get("repeat", 1),
        protocol=report["protocol"],
        provider=report["execution_provider"],
        workers=report["workers"],
        policy=policy_identity(report),
        shard=Shard.from_json(report["shard"]) if report["shard"] else None,
        invocation=Invocation(invocation["args"], invocation["cwd"]) if invocation else None,
    )


def compatible_rows(
    path: Path,
    report: dict[str, Any],
    *,
    suite: str,
    seed: int,
    protocol: dict[str, Any],
    policy: dict[str, Any],
) -> list[EpisodeRow]:
    """The rows of a loaded ``report`` (from ``path``) if it was made under this policy, suite, seed and protocol."""
    difference = policy_difference(policy_identity(report), policy)
    if difference is not None:
        raise ReportError(f"{path} was made with {difference}")
    for name, earlier, now in (("suite", report["suite"], suite), ("seed", report["seed"], seed)):
        if earlier != now:
            raise ReportError(f"{path} was made with {name} {earlier!r}, this run has {now!r}")
    earlier_protocol = report["protocol"]
    for key, value in protocol.items():
        if earlier_protocol.get(key) != value:
            raise ReportError(
                f"{path} was made under another protocol: {key} was {short_repr(earlier_protocol.get(key))}, "
                f"now {short_repr(value)}"
            )
    return report["episodes"]


def policy_identity(report: dict[str, Any]) -> dict[str, Any]:
    """The identity of the policy a loaded report evaluated; a report from before ``env.policy`` evaluated an export."""
    env = report["env"]
    policy = env.get("policy")
    if isinstance(policy, dict):
        return policy
    return {"kind": ONNX_EXPORT, "export_dir": env["export_dir"], "export_files": env["export_files"]}


def policy_difference(earlier: dict[str, Any], now: dict[str, Any]) -> str | None:
    """How a report's policy differs from this run's, in words; None when they are the same policy.

    Two exports are the same when their files' digests are (wherever they lie); any other two
    policies when their identities are equal.
    """
    if earlier.get("kind") == now.get("kind") == ONNX_EXPORT:
        then, current = _digests(earlier), _digests(now)
        if then == current:
            return None
        changed = sorted(name for name in then.keys() | current.keys() if then.get(name) != current.get(name))
        return f"a different export (changed: {', '.join(map(short_repr, changed))})"
    if earlier == now:
        return None
    keys = sorted(key for key in earlier.keys() | now.keys() if earlier.get(key) != now.get(key))
    return (
        f"another policy: {describe_policy(earlier)}, this run evaluates {describe_policy(now)} "
        f"(differs in {', '.join(map(short_repr, keys))})"
    )


def describe_policy(identity: dict[str, Any]) -> str:
    """A policy in a few words, from its identity."""
    kind = identity.get("kind")
    if kind == ONNX_EXPORT:
        return f"export {short_repr(identity.get('export_dir'))}"
    if kind == SERVED_POLICY:
        return f"{short_repr(identity.get('protocol'))} server {short_repr(identity.get('url'))}"
    return f"policy {short_repr(identity.get('name', kind))}"


def _digests(identity: dict[str, Any]) -> dict[str, Any]:
    files = identity.get("export_files")
    entries = files if isinstance(files, list) else []
    return {entry.get("name"): entry.get("sha256") for entry in entries if isinstance(entry, dict)}
