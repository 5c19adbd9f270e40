"""``pytest-vla merge``: the shards of one run back into the report one unsharded run gives.

Shards of one run share export, suite, seed, protocol and tasks, and each holds the rows of its
share. The merged report has every row once, in run order, with the tallies an unsharded run
computes; a shard that never reported, or stopped early, leaves the merge partial, and its
episodes are listed as missing with the command that runs them: a shard's own command, read from
its report and said to be so, since whoever wrote the report chose it. Reads files only: no pytest,
no simulator; every source is checked (:func:`load_report`), and JUnit XML with a DTD is refused.
"""

from __future__ import annotations

import io
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from xml.parsers import expat

from junitparser.xunit2 import JUnitXml

from pytest_vla.errors import MAX_READ_BYTES, ReportError, one_line, printable
from pytest_vla.report.html import write_html
from pytest_vla.report.layout import JUNIT_NAME, REPORT_NAME
from pytest_vla.report.reader import compatible_rows, load_report, run_info, timestamp
from pytest_vla.report.schema import EpisodeId, EpisodeRow
from pytest_vla.report.shards import Shard, run_episodes
from pytest_vla.report.writer import ReportWriter


@dataclass(frozen=True)
class MergeResult:
    report_path: Path
    report: dict[str, Any]
    junit_path: Path | None
    unfinished: list[str]  # one printable line per shard that did not report or stopped early, with its command


def merge(sources: Sequence[Path], output: Path) -> MergeResult:
    """Merge shard output directories, report.json files and JUnit XML files into ``output``."""
    report_paths, junit_paths = _sources(sources)
    for path in (*report_paths, *junit_paths):
        if output.resolve() in (path, path.parent):
            raise ReportError(f"--output {output} is where the source {path} is: merge into another directory")
    loaded = [(path, load_report(path)) for path in report_paths]
    junits = [_read_junit(path) for path in junit_paths]  # all checked before anything is written
    first_path, first = loaded[0]
    info = run_info(first)
    count = info.shard.count if info.shard else 1
    shards: dict[int, list[tuple[Path, dict[str, Any]]]] = {}
    missing: dict[int, set[EpisodeId]] = {}  # per shard: what its reports list as not run
    rows: dict[EpisodeId, tuple[EpisodeRow, Path]] = {}
    for path, report in loaded:
        shard_rows = compatible_rows(
            path, report, suite=info.suite, seed=info.seed, protocol=info.protocol, policy=info.policy
        )
        this = run_info(report)
        if [task.key for task in this.tasks] != [task.key for task in info.tasks]:
            raise ReportError(f"{path} ran other tasks than {first_path}: not shards of one run")
        if (this.num_episodes, this.repeat) != (info.num_episodes, info.repeat):
            raise ReportError(
                f"{path} ran {this.num_episodes} episodes x {this.repeat} trials per task, {first_path} "
                f"{info.num_episodes} x {info.repeat}: not shards of one run"
            )
        shard = this.shard or Shard(0, 1)
        if shard.count != count:
            raise ReportError(f"{path} is shard {shard}, {first_path} is one of {count}: not shards of one run")
        shards.setdefault(shard.index, []).append((path, report))
        missing.setdefault(shard.index, set()).update(map(EpisodeId.of_row, report["missing_episodes"]))
        for row in shard_rows:
            episode = EpisodeId.of_row(row)
            if episode in rows and rows[episode][0] != row:
                raise ReportError(
                    f"two different rows for {episode.nodeid(info.suite)}: in {rows[episode][1]} and {path}"
                )
            rows.setdefault(episode, (row, path))

    everything = run_episodes(info.tasks, info.num_episodes, info.repeat)
    expected = rows.keys() | set().union(*missing.values())
    unfinished = []
    for index in range(count):
        shard = Shard(index, count)
        if index not in shards:
            share = shard.share(everything)
            expected |= set(share)
            unfinished.append(printable(_absent(shard, len(share), shards, output)))
        elif not_run := missing[index] - rows.keys():
            unfinished.append(printable(_stopped_early(shard, len(not_run), *shards[index][-1])))

    reports = [report for entries in shards.values() for _, report in entries]
    merged_info = replace(
        info,
        shard=None,
        invocation=None,
        workers=sum(report["workers"] for report in reports),
        provider=", ".join(sorted({report["execution_provider"] for report in reports})),
    )
    writer = ReportWriter(merged_info, output)
    writer.expect([episode for episode in everything if episode in expected])
    for row, _ in rows.values():
        writer.add(row)
    merged = writer.write(lambda report: _as_merged(report, first, shards))
    write_html(merged, output)
    junit_path = _merge_junit(junits, output / JUNIT_NAME) if junits else None
    return MergeResult(writer.path, merged, junit_path, unfinished)


def _sources(sources: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """The report.json and JUnit files named, a directory standing for its report.json and junit.xml."""
    reports: dict[Path, None] = {}
    junits: dict[Path, None] = {}
    for source in sources:
        if source.is_dir():
            if not (source / REPORT_NAME).is_file():
                raise ReportError(f"{source} has no {REPORT_NAME}: not a shard's --vla-output directory")
            reports[(source / REPORT_NAME).resolve()] = None
            if (source / JUNIT_NAME).is_file():
                junits[(source / JUNIT_NAME).resolve()] = None
        elif source.is_file() and source.suffix == ".json":
            reports[source.resolve()] = None
        elif source.is_file() and source.suffix == ".xml":
            junits[source.resolve()] = None
        else:
            raise ReportError(f"{source} is not a shard's output directory, a report.json or a JUnit XML file")
    if not reports:
        raise ReportError("no report.json among the sources: name the shards' --vla-output directories")
    return list(reports), list(junits)


def _absent(shard: Shard, size: int, shards: dict[int, list[tuple[Path, dict[str, Any]]]], output: Path) -> str:
    """A shard that never reported: started like a shard that did, into a directory of its own."""
    template_shard = next(iter(shards))
    path, template = shards[template_shard][-1]
    where = output.resolve() / f"shard-{shard.index}"
    reason = f"shard {shard} did not report ({size} episodes)"
    invocation = template["invocation"]
    if invocation is None:
        return f"{reason}: run it with --vla-shard {shard}, then merge again"
    args = _with_option(invocation["args"], "--vla-shard", str(shard))
    args = _with_option(args, "--vla-output", str(where))
    if any(arg == "--junitxml" or arg.startswith("--junitxml=") for arg in args):
        args = _with_option(args, "--junitxml", str(where / JUNIT_NAME))
    ran = _from_report(path, f"shard {Shard(template_shard, shard.count)}")
    return f"{reason}; run it, then merge again adding {where}. {ran}, its shard and output changed: " + _command(
        invocation["cwd"], args
    )


def _stopped_early(shard: Shard, n_missing: int, path: Path, report: dict[str, Any]) -> str:
    reason = f"shard {shard} stopped early ({n_missing} episodes missing)"
    invocation = report["invocation"]
    if invocation is None:
        return f"{reason}: resume it with --vla-resume --vla-shard {shard}, then merge again"
    args = _with_option(invocation["args"], "--vla-shard", str(shard))
    if "--vla-resume" not in args:
        args.append("--vla-resume")
    return (
        f"{reason}; resume it, then merge again. {_from_report(path, 'it')}, with --vla-resume: "
        f"{_command(invocation['cwd'], args)}"
    )


def _from_report(path: Path, which: str) -> str:
    """Whose command is printed: the report's author chose every argument and the directory."""
    return f"The command {which} ran with, as {path} records it (check it before running it)"


def _with_option(args: Sequence[str], option: str, value: str) -> list[str]:
    """``args`` with every ``option VALUE`` / ``option=VALUE`` dropped and ``option value`` appended."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(f"{option}="):
            kept.append(arg)
    return [*kept, option, value]


def _command(cwd: str, args: list[str]) -> str:
    return f"cd {shlex.quote(cwd)} && pytest {shlex.join(args)}"


def _as_merged(
    report: dict[str, Any], first: dict[str, Any], shards: dict[int, list[tuple[Path, dict[str, Any]]]]
) -> None:
    """The run's span and environment from its shards, and where each shard's part came from."""
    parts = sorted(
        ((index, path, part) for index, entries in shards.items() for path, part in entries),
        key=lambda entry: (entry[0], str(entry[1])),
    )
    started = min((part["started_at"] for _, _, part in parts), key=timestamp)
    finished = max((part["finished_at"] for _, _, part in parts), key=timestamp)
    report["started_at"], report["finished_at"] = started, finished
    report["wall_clock_s"] = max(0.0, round((timestamp(finished) - timestamp(started)).total_seconds(), 3))
    report["env"] = first["env"]
    report["merged_from"] = [
        {
            "shard": index,
            "report": str(path),
            "host": part["env"].get("hostname"),
            "started_at": part["started_at"],
            "wall_clock_s": part["wall_clock_s"],
            "workers": part["workers"],
            "partial": part["partial"],
        }
        for index, path, part in parts
    ]


def _merge_junit(junits: list[JUnitXml], output: Path) -> Path:
    merged = JUnitXml()
    for junit in junits:
        merged += junit
    output.parent.mkdir(parents=True, exist_ok=True)
    merged.write(str(output))
    return output


def _read_junit(path: Path) -> JUnitXml:
    data = _junit_bytes(path)
    try:
        return JUnitXml.fromfile(io.BytesIO(data))
    except Exception as exc:  # lxml and ElementTree raise their own parse errors, junitparser JUnitXmlError
        raise ReportError(f"{path} is not JUnit XML: {one_line(exc)}") from None


def _junit_bytes(path: Path) -> bytes:
    """A shard's JUnit XML, bounded and without a DTD: the only way to entities (external or expanding)."""
    with path.open("rb") as stream:
        data = stream.read(MAX_READ_BYTES + 1)
    if len(data) > MAX_READ_BYTES:
        raise ReportError(f"{path}: larger than {MAX_READ_BYTES // 1024**2} MiB: refused unread")
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _refuse_doctype
    try:
        parser.Parse(data, True)
    except _Doctype:
        raise ReportError(f"{path}: declares a DTD (<!DOCTYPE>), which JUnit XML has no use for: refused") from None
    except expat.ExpatError as exc:
        raise ReportError(f"{path} is not JUnit XML: {one_line(exc)}") from None
    return data


class _Doctype(Exception):
    pass


def _refuse_doctype(*_: Any) -> None:
    raise _Doctype
