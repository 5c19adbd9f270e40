"""Command-line options and ini keys, and the checked :class:`Settings` read from them."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import pytest

from pytest_vla.export import DEMO_NAME, resolve_export
from pytest_vla.policy.choice import DEFAULT_QUERY_TIMEOUT_S, SERVER_PROTOCOLS, PolicyChoice
from pytest_vla.report.compare import DEFAULT_MARGIN_PP
from pytest_vla.report.schema import MAX_REPEAT
from pytest_vla.report.shards import Shard
from pytest_vla.suites import DEFAULT_SUITE, task_selection

DEFAULT_NUM_EPISODES = 3
DEFAULT_OUTPUT = "eval_output"
RENDER_BACKENDS = ("osmesa", "egl")
DEFAULT_PREFLIGHT_TIMEOUT_S = 300.0
DEFAULT_MAX_COST_USD = 50.0
VIDEO_CHOICES = ("all", "failures")

# (option, help, metavar or None for a flag); each is also the ini key with dashes as underscores.
_OPTIONS = (
    (
        "--vla-export",
        "ONNX export directory to evaluate (vla_export.json + model), or 'demo' for the demo export "
        "(docs/demo.md); enables pytest-vla",
        "PATH",
    ),
    (
        "--vla-policy-server",
        "evaluate the policy a server serves at this ws:// URL (openpi's serve_policy.py, vla-eval's model "
        "servers, pytest-vla serve), one connection per worker; enables pytest-vla",
        "URL",
    ),
    (
        "--vla-policy-protocol",
        f"the server's protocol, with that protocol's own client's observation and action handling: "
        f"{' or '.join(SERVER_PROTOCOLS)} (default: {SERVER_PROTOCOLS[0]})",
        "NAME",
    ),
    (
        "--vla-policy-timeout",
        f"seconds a served policy may take to answer one query before that episode ends as a harness error "
        f"(default: {DEFAULT_QUERY_TIMEOUT_S:g})",
        "S",
    ),
    (
        "--vla-policy",
        "evaluate the policy a plugin or conftest makes under this name (hook pytest_vla_make_policy), or "
        "'demo' for the suite's scripted demo policy (metaworld, aloha); enables pytest-vla",
        "NAME",
    ),
    ("--vla-suite", f"benchmark suite (default: {DEFAULT_SUITE})", "NAME"),
    (
        "--vla-tasks",
        "comma-separated families or single tasks FAMILY:INDEX of the suite, as docs/suites.md lists them "
        "(default: the suite's default selection)",
        "LIST",
    ),
    ("--vla-num-episodes", f"episodes per task, 0..N-1 (default: {DEFAULT_NUM_EPISODES})", "N"),
    (
        "--vla-repeat",
        f"run each episode (task, init state) K times, as K items ep0, ep0-trial1, ...; trial r draws the policy's "
        f"randomness from seed + r; report.json adds pass@k and pass^k (1..{MAX_REPEAT}, default: 1)",
        "K",
    ),
    ("--vla-seed", "environment seed (default: the suite's protocol's)", "N"),
    ("--vla-output", f"directory for report.json and trajectories (default: ./{DEFAULT_OUTPUT})", "DIR"),
    ("--vla-max-steps", "override the suite's policy-step budget per episode (for smoke runs)", "N"),
    ("--vla-save-trajectories", "save each episode's actions and states as .npz", None),
    (
        "--vla-video",
        "record each episode's video (videos/*.mp4, the suite's front camera): 'all' (also --vla-video alone), "
        "or 'failures' to keep only failed and errored episodes' (default: none)",
        "WHICH",
    ),
    (
        "--vla-resume",
        "run only the episodes not yet in --vla-output's report.json (same export, seed and protocol)",
        None,
    ),
    (
        "--vla-episode-timeout",
        "wall-clock seconds per episode, from its reset (default: 120 + 2 per step of its budget)",
        "S",
    ),
    (
        "--vla-gpus",
        "comma-separated GPUs (indexes or UUIDs) to pin xdist workers to, round robin (default: the "
        "visible ones: CUDA_VISIBLE_DEVICES, else nvidia-smi's)",
        "LIST",
    ),
    ("--vla-render", "MuJoCo rendering backend: osmesa (CPU) or egl (GPU) (default: MUJOCO_GL, else osmesa)", "NAME"),
    (
        "--vla-shard",
        "run only shard K of N (K counted from 0) of the selected episodes; default: from "
        "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT, or JOB_COMPLETION_INDEX/VLA_SHARD_COUNT",
        "K/N",
    ),
    (
        "--vla-preflight-timeout",
        "seconds any one step of the simulator preflight (the import, an env build, a reset, rendering, a "
        f"task's settle check) may take before it counts as hung (default: {DEFAULT_PREFLIGHT_TIMEOUT_S:g})",
        "S",
    ),
    (
        "--vla-cost-preview",
        "run the preflight, print the selection's estimated wall time and cost, and stop: no episode runs",
        None,
    ),
    (
        "--vla-gpu-hourly-usd",
        "price of one GPU (or machine, without GPUs) per hour, for the estimate (default: 0)",
        "USD",
    ),
    (
        "--vla-max-cost-usd",
        f"a run estimated above this asks for confirmation, or is refused when not interactive (default: "
        f"{DEFAULT_MAX_COST_USD:g})",
        "USD",
    ),
    ("--vla-yes", "run even when the estimate is above --vla-max-cost-usd, without asking", None),
    (
        "--vla-baseline",
        "compare this run with an earlier one (its report.json or --vla-output directory), episode by episode; "
        "exit non-zero only for a significant regression beyond --vla-max-regression",
        "PATH",
    ),
    (
        "--vla-max-regression",
        f"the margin of --vla-baseline's comparison, in percentage points (default: {DEFAULT_MARGIN_PP:g})",
        "PP",
    ),
    (
        "--vla-min-success-rate",
        "exit 0 when the aggregate success rate is at least R (0..1), whatever single episodes did",
        "R",
    ),
)


# Options that may also stand alone, meaning this value (reflex users type --video as a flag).
_BARE_VALUES = {"--vla-video": "all"}


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("vla", "VLA policy evaluation (pytest-vla)")
    for option, help_text, metavar in _OPTIONS:
        dest = _dest(option)
        if metavar is None:
            group.addoption(option, action="store_true", default=None, dest=dest, help=help_text)
            parser.addini(dest, help_text, type="bool", default=False)
        elif option in _BARE_VALUES:
            group.addoption(
                option, nargs="?", const=_BARE_VALUES[option], default=None, dest=dest, metavar=metavar, help=help_text
            )
            parser.addini(dest, help_text, default=None)
        else:
            group.addoption(option, default=None, dest=dest, metavar=metavar, help=help_text)
            parser.addini(dest, help_text, default=None)


# Each names the policy to evaluate, and so enables pytest-vla; exactly one may be given.
POLICY_OPTIONS = ("--vla-export", "--vla-policy-server", "--vla-policy")


@dataclass(frozen=True)
class Settings:
    policy: PolicyChoice
    suite: str
    tasks: tuple[str, ...]
    num_episodes: int
    repeat: int  # trials of each episode
    seed: int | None  # None: the suite's default_seed
    output: Path
    max_steps: int | None
    save_trajectories: bool
    min_success_rate: float | None
    baseline: Path | None
    max_regression_pp: float
    episode_timeout: float | None
    resume: bool
    video: str | None  # "all", "failures", or None
    gpus: tuple[str, ...] | None  # None: the visible ones
    render: str | None  # None: MUJOCO_GL as set, else osmesa
    shard: Shard | None
    shard_source: str  # where the shard came from: the option or a scheduler's variables
    preflight_timeout: float
    cost_preview: bool
    gpu_hourly_usd: float
    max_cost_usd: float
    yes: bool


def export_path(config: pytest.Config) -> Path | None:
    """The export directory ``--vla-export`` (or the ``vla_export`` ini key) names, if any."""
    value = _value(config, "--vla-export")
    if value is None:
        return None
    return resolve_export(str(value)) if value == DEMO_NAME else _located_path(config, "--vla-export")


def is_active(config: pytest.Config) -> bool:
    """pytest-vla does nothing unless a policy is named."""
    return any(_value(config, option) is not None for option in POLICY_OPTIONS)


def names_a_policy(namespace: Any) -> bool:
    """Whether pytest's early parse of the command line names a policy (before ini files are read)."""
    return any(getattr(namespace, _dest(option), None) is not None for option in POLICY_OPTIONS)


def policy_choice(config: pytest.Config) -> PolicyChoice:
    """The one policy the options name; raises :class:`pytest.UsageError` for none or several."""
    given = [option for option in POLICY_OPTIONS if _value(config, option) is not None]
    if len(given) != 1:
        raise pytest.UsageError(
            f"name one policy to evaluate: {' or '.join(POLICY_OPTIONS)} (given: {', '.join(given)})"
        )
    protocol = _choice(config, "--vla-policy-protocol", SERVER_PROTOCOLS) or SERVER_PROTOCOLS[0]
    timeout = _float(config, "--vla-policy-timeout", _positive, "a positive number of seconds", DEFAULT_QUERY_TIMEOUT_S)
    server = _value(config, "--vla-policy-server")
    name = _value(config, "--vla-policy")
    return PolicyChoice(
        export=export_path(config),
        server=None if server is None else str(server),
        protocol=protocol,
        name=None if name is None else str(name),
        query_timeout_s=timeout,
    )


def runs_episodes(config: pytest.Config) -> bool:
    """False for ``--collect-only``, ``--setup-only`` and ``--setup-plan``: they list episodes, never run them."""
    return not (config.option.collectonly or config.option.setuponly)


def read_settings(config: pytest.Config) -> Settings:
    """The options as typed values; raises :class:`pytest.UsageError` naming the bad option."""
    tasks = _value(config, "--vla-tasks") or ""
    max_steps = _int(config, "--vla-max-steps", None)
    if max_steps is not None and max_steps < 1:
        raise pytest.UsageError(f"--vla-max-steps must be at least 1, got {max_steps}")
    save = _value(config, "--vla-save-trajectories")
    min_success_rate = _float(
        config, "--vla-min-success-rate", lambda rate: 0.0 <= rate <= 1.0, "a fraction in 0..1 (0.9 for 90%)", None
    )
    seed = _int(config, "--vla-seed", None)
    # numpy's seeds end at 2**32 - 1, and MetaWorld and ALOHA seed episode i with seed + i.
    if seed is not None and not 0 <= seed < 2**31:
        raise pytest.UsageError(f"--vla-seed must be in 0..{2**31 - 1}, got {seed}")
    episode_timeout = _float(config, "--vla-episode-timeout", _positive, "a positive number of seconds", None)
    repeat = _int(config, "--vla-repeat", 1)
    if not 1 <= repeat <= MAX_REPEAT:
        raise pytest.UsageError(f"--vla-repeat must be in 1..{MAX_REPEAT}, got {repeat}")
    return Settings(
        policy=policy_choice(config),
        suite=_value(config, "--vla-suite") or DEFAULT_SUITE,
        tasks=task_selection(str(tasks)),
        num_episodes=_int(config, "--vla-num-episodes", DEFAULT_NUM_EPISODES),
        repeat=repeat,
        seed=seed,
        output=_located_path(config, "--vla-output") or Path(DEFAULT_OUTPUT).resolve(),
        max_steps=max_steps,
        save_trajectories=bool(save),
        min_success_rate=min_success_rate,
        baseline=_located_path(config, "--vla-baseline"),
        max_regression_pp=_float(
            config, "--vla-max-regression", lambda pp: 0 <= pp < 100, "percentage points in 0..100", DEFAULT_MARGIN_PP
        ),
        episode_timeout=episode_timeout,
        resume=bool(_value(config, "--vla-resume")),
        video=_choice(config, "--vla-video", VIDEO_CHOICES),
        gpus=_gpus(config),
        render=_choice(config, "--vla-render", RENDER_BACKENDS),
        **_shard(config),
        preflight_timeout=_float(
            config, "--vla-preflight-timeout", _positive, "a positive number of seconds", DEFAULT_PREFLIGHT_TIMEOUT_S
        ),
        cost_preview=bool(_value(config, "--vla-cost-preview")),
        gpu_hourly_usd=_float(config, "--vla-gpu-hourly-usd", _at_least_zero, "a price of 0 or more", 0.0),
        max_cost_usd=_float(config, "--vla-max-cost-usd", _at_least_zero, "a price of 0 or more", DEFAULT_MAX_COST_USD),
        yes=bool(_value(config, "--vla-yes")),
    )


def _located_path(config: pytest.Config, option: str) -> Path | None:
    """A path option, absolute: the command line's relative to the working directory, an ini file's to its directory."""
    dest = _dest(option)
    value = config.getoption(dest)
    base = config.invocation_params.dir
    if value is None:
        value = config.getini(dest) or None
        if config.inipath is not None:  # as pytest resolves its "paths" ini type
            base = config.inipath.parent
    return None if value is None else (base / Path(str(value)).expanduser()).resolve()


def _positive(value: float) -> bool:
    return value > 0


def _at_least_zero(value: float) -> bool:
    return value >= 0


def _gpus(config: pytest.Config) -> tuple[str, ...] | None:
    value = _value(config, "--vla-gpus")
    if value is None:
        return None
    devices = tuple(device.strip() for device in str(value).split(",") if device.strip())
    if not devices:
        raise pytest.UsageError(f"--vla-gpus must name at least one GPU (an index or a UUID), got {value!r}")
    return devices


def _choice(config: pytest.Config, option: str, choices: tuple[str, ...]) -> str | None:
    value = _value(config, option)
    if value is not None and value not in choices:
        raise pytest.UsageError(f"{option} must be one of {', '.join(choices)}, got {value!r}")
    return None if value is None else str(value)


def _shard(config: pytest.Config) -> dict[str, Any]:
    """``shard`` and ``shard_source``: the option, else a Slurm array's or a Kubernetes Indexed Job's index."""
    option = _value(config, "--vla-shard")
    if option is not None:
        text, source = str(option), "--vla-shard"
    elif "SLURM_ARRAY_TASK_ID" in os.environ and "SLURM_ARRAY_TASK_COUNT" in os.environ:
        # The array's own numbering may start anywhere (--array=1-8) and step (--array=0-14:2).
        task_id, first = _env_int("SLURM_ARRAY_TASK_ID"), _env_int("SLURM_ARRAY_TASK_MIN", 0)
        step = _env_int("SLURM_ARRAY_TASK_STEP", 1)
        index, off_step = divmod(task_id - first, step)
        text = f"{index}/{os.environ['SLURM_ARRAY_TASK_COUNT']}" if not off_step and index >= 0 else "?"
        source = "SLURM_ARRAY_TASK_ID"
    elif "JOB_COMPLETION_INDEX" in os.environ:
        if "VLA_SHARD_COUNT" not in os.environ:
            raise pytest.UsageError(
                "JOB_COMPLETION_INDEX is set but VLA_SHARD_COUNT is not: set it to the Job's completions, "
                "or give --vla-shard K/N (--vla-shard 0/1 runs everything)"
            )
        text, source = f"{os.environ['JOB_COMPLETION_INDEX']}/{os.environ['VLA_SHARD_COUNT']}", "JOB_COMPLETION_INDEX"
    else:
        return {"shard": None, "shard_source": ""}
    try:
        shard = Shard.parse(text)
    except ValueError as exc:
        if source == "--vla-shard":
            raise pytest.UsageError(f"--vla-shard {exc}") from None
        raise pytest.UsageError(
            f"cannot tell this job's shard from {source} ({_scheduler_variables()}); give --vla-shard K/N "
            "(--vla-shard 0/1 runs everything)"
        ) from None
    return {"shard": None if shard.count == 1 else shard, "shard_source": source}


def _env_int(name: str, default: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None and default is not None:
        return default
    try:
        return int(str(value))
    except ValueError:
        raise pytest.UsageError(f"{name} must be an integer, got {value!r}") from None


def _scheduler_variables() -> str:
    names = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_STEP", "SLURM_ARRAY_TASK_COUNT",
             "JOB_COMPLETION_INDEX", "VLA_SHARD_COUNT")  # fmt: skip
    return ", ".join(f"{name}={os.environ[name]}" for name in names if name in os.environ)


def _dest(option: str) -> str:
    return option.lstrip("-").replace("-", "_")


def _value(config: pytest.Config, option: str) -> str | bool | None:
    """The command line wins over the ini file."""
    dest = _dest(option)
    value = config.getoption(dest)
    if value is None:
        value = config.getini(dest) or None
    return value


@overload
def _int(config: pytest.Config, option: str, default: int) -> int: ...
@overload
def _int(config: pytest.Config, option: str, default: None) -> int | None: ...
def _int(config: pytest.Config, option: str, default: int | None) -> int | None:
    value = _value(config, option)
    if value is None:
        return default
    try:
        return int(str(value))
    except ValueError:
        raise pytest.UsageError(f"{option} must be an integer, got {value!r}") from None


@overload
def _float(config: pytest.Config, option: str, valid: Callable[[float], bool], what: str, default: float) -> float: ...
@overload
def _float(
    config: pytest.Config, option: str, valid: Callable[[float], bool], what: str, default: None
) -> float | None: ...
def _float(
    config: pytest.Config, option: str, valid: Callable[[float], bool], what: str, default: float | None
) -> float | None:
    """The option as a number ``valid`` accepts (``default`` when unset), else a usage error: it must be ``what``."""
    value = _value(config, option)
    if value is None:
        return default
    try:
        number = float(str(value))
    except ValueError:
        number = math.nan  # fails every check below
    if not (math.isfinite(number) and valid(number)):  # inf would reach report.json as non-standard JSON
        raise pytest.UsageError(f"{option} must be {what}, got {value!r}")
    return number
