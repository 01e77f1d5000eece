"""Workspace settings: `stoic.toml` (DESIGN §3).

The settings are pydantic models; the file `stoic init` writes is generated from them, so every
setting appears in it, commented, with its default and the description written here.
"""

from __future__ import annotations

import math
import re
import string
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from stoic.core import next_steps
from stoic.core.limits import MAX_INT_BITS, MAX_SETTINGS_BYTES
from stoic.core.pause import DEFAULT_BATCH_SIZE
from stoic.core.policy import (
    DEFAULT_ENV_PASSTHROUGH,
    DEFAULT_SECRET_NAMES,
    SECRET_NAME_PATTERN,
    check_patterns,
)
from stoic.core.text import shortened
from stoic.core.vocabulary import closest
from stoic.exceptions import ConfigError
from stoic.plan.reading import NotARegularFile, TooLarge, read_bounded
from stoic.store.gate_settings import GateSettings

__all__ = ["PolicySettings", "Settings", "load_settings"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QueueSettings(_Section):
    batch_size: int = Field(
        DEFAULT_BATCH_SIZE, ge=1, description="Proposals reviewed together in one batch."
    )


class ReviewSettings(_Section):
    min_read_seconds: float = Field(
        3.0,
        ge=0,
        description="Approving faster than this per proposal raises a rubber-stamping red flag.",
    )


_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"{_LABEL}(\.{_LABEL})*\.?")


def _host_name(value: str) -> str:
    if len(value) > 253 or not _HOST_NAME.fullmatch(value):
        raise ValueError(
            f"{shortened(value)!r} is not a host name (labels of letters, digits and '-',"
            " joined by '.', as in console.example.org)"
        )
    return value


_HostName = Annotated[str, AfterValidator(_host_name)]


class ServeSettings(_Section):
    public_url: str = Field(
        "",
        pattern=r"^(https?://[^\s?#]+)?$",
        description="The address people open the console at (https://stoic.example.org): each"
        " notification then links to its proposal, escalation or run. Empty: no links.",
    )
    allowed_hosts: list[_HostName] = Field(
        default_factory=list,
        description="Host names the review console answers to besides IP addresses, localhost,"
        " its --host and public_url's host (read when it starts). A request naming any other"
        " is refused: a web page cannot reach the console through a name of its own pointed"
        " at this machine.",
    )


class StoreSettings(_Section):
    url: str = Field(
        "",
        pattern=r"^(postgres(ql)?://\S*)?$",
        description="The PostgreSQL database runs are recorded in for workers"
        " (postgresql://USER@HOST/DB); --db and STOIC_DB come first. Empty: this workspace."
        " Keep a password in ~/.pgpass, not here.",
    )


class SchedulesSettings(_Section):
    catch_up_seconds: float = Field(
        24 * 3600.0,
        ge=0,
        description="A schedule's slots missed while the server was down are run once, as one"
        " run, when the latest of them is at most this many seconds old; older, they are"
        " recorded skipped.",
    )


MAX_DEFAULT_TIMEOUT_SECONDS = 7 * 24 * 3600
"""A default timeout longer than a week is a typo: a task that long gives itself `timeout:`."""


def _timeout_seconds(value: object) -> object:
    """A default timeout: a number of seconds above 0 and at most a week. Checked before
    pydantic reads it, so a string ("3600") or a boolean is refused, never converted."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(
            f"must be a number of seconds, not {shortened(repr(value))} (hint: write a plain"
            " number, such as 3600 for an hour)"
        )
    if not 0 < value <= MAX_DEFAULT_TIMEOUT_SECONDS:
        raise ValueError(
            f"must be more than 0 and at most {MAX_DEFAULT_TIMEOUT_SECONDS} seconds (a week),"
            f" not {value!r} (hint: 3600 is an hour; a task that needs longer says so with"
            " timeout: in the plan)"
        )
    return float(value)


class RunnerSettings(_Section):
    workers: int = Field(4, ge=1, description=f"Tasks run at the same time by {next_steps.run()}.")
    default_timeout_seconds: float = Field(
        3600.0,
        description="Seconds a shell, python or http task, or an iterate check, may run when"
        " the plan gives it no timeout: past them it is stopped and fails as a timeout (an http"
        " request keeps its own 30 s when that is shorter).",
    )
    output_cap_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="Captured output kept per attempt; the rest is cut."
    )
    kill_grace_seconds: float = Field(
        5.0, ge=0, description="Time between TERM and KILL when a task is stopped."
    )
    task_user: str = Field(
        "",
        description="When stoic is run as root: the user (name or uid) tasks, checks, verifiers"
        ' and agents run as, so they cannot read stoic\'s memory or write its log; "" runs'
        " them as stoic's own user.",
    )

    _timeout = field_validator("default_timeout_seconds", mode="before")(_timeout_seconds)


class RecoverySettings(_Section):
    timeout_retry_delay_seconds: float = Field(
        5.0, ge=0, description="Wait before the one automatic retry of a timed-out task."
    )
    unavailable_retry_delay_seconds: float = Field(
        5.0, ge=0, description="Wait before the one automatic retry when a service was unavailable."
    )
    output_patterns: dict[PatternKind, list[str]] = Field(
        default_factory=lambda: {kind: list(found) for kind, found in OUTPUT_PATTERNS.items()},
        description="Regular expressions that give a failed command's output its failure kind.",
    )

    @field_validator("output_patterns")
    @classmethod
    def _patterns(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for patterns in value.values():
            check_patterns(patterns)
        return value


Executor = Literal["shell", "python", "http", "agent"]

PatternKind = Literal["rate_limited", "unavailable", "context_overflow", "tool_error", "quality"]
OUTPUT_PATTERNS: dict[PatternKind, list[str]] = {
    "rate_limited": [r"(?i)rate[ _-]?limit", r"(?i)too many requests", r"\b429\b"],
    "unavailable": [r"(?i)service unavailable", r"(?i)\boverloaded\b", r"\b503\b"],
    "context_overflow": [
        r"(?i)context (length|window) (exceeded|is too long)",
        r"(?i)prompt is too long",
        r"(?i)maximum context length",
    ],
}


AGENT_PLACEHOLDERS = frozenset(
    {"prompt", "tools", "approval", "role", "profile", "task", "agent_file"}
)


class ProfileSettings(_Section):
    tools: list[str] = Field(default_factory=list, description="Tools the agent may use.")
    approval: Literal["interactive", "accept-edits", "plan-only", "bypass"] = Field(
        ..., description="How each tool call is approved."
    )
    gate: bool = Field(
        False, description="Gate each tool call of agents of this profile (a task's gate:)."
    )


class AgentSettings(_Section):
    agent_cli: list[str] = Field(
        [
            "claude",
            "-p",
            "{prompt}",
            "--allowedTools",
            "{tools}",
            "--permission-mode",
            "{approval}",
        ],
        description="The agent CLI's command line; {prompt} {tools} {approval} {role}"
        " {profile} {task} {agent_file} are filled in.",
    )
    approval_values: dict[str, str] = Field(
        {
            "interactive": "default",
            "accept-edits": "acceptEdits",
            "plan-only": "plan",
            "bypass": "bypassPermissions",
        },
        description="What {approval} becomes for each approval mode.",
    )
    tools_separator: str = Field(",", description="How {tools} joins the tool names.")
    default_timeout_seconds: float = Field(
        7200.0,
        description="Seconds an agent task may run when the plan gives it no timeout: past"
        " them the agent is stopped and the attempt fails as a timeout.",
    )
    profiles: dict[str, ProfileSettings] = Field(
        default_factory=dict,
        description="Profiles added to (or replacing) read-only, write, verification, design.",
    )
    roles: dict[str, str] = Field(
        default_factory=dict, description="Role → profile, added to (or replacing) the built-ins."
    )

    _timeout = field_validator("default_timeout_seconds", mode="before")(_timeout_seconds)

    @field_validator("agent_cli")
    @classmethod
    def _template(cls, value: list[str]) -> list[str]:
        for part in value:
            try:
                names = {name for _, name, _, _ in string.Formatter().parse(part) if name}
            except ValueError as exc:
                raise ValueError(f"{part!r} is not a valid template part ({exc})") from None
            unknown = names - AGENT_PLACEHOLDERS
            if unknown:
                known = ", ".join(f"{{{name}}}" for name in sorted(AGENT_PLACEHOLDERS))
                raise ValueError(f"unknown placeholder {{{sorted(unknown)[0]}}} (known: {known})")
        return value


class PolicySettings(_Section):
    allowed_executors: list[Executor] = Field(
        ["shell", "python", "http", "agent"], description="Executors tasks may use."
    )
    forbidden_commands: list[str] = Field(
        [],
        description="Regular expressions; a command line that matches one is blocked.",
    )
    env_passthrough: list[str] = Field(
        list(DEFAULT_ENV_PASSTHROUGH),
        description="Names (or globs) of stoic's environment variables that every process it"
        " starts sees (tasks, checks, verifiers, agents, executed actions, command notifiers).",
    )
    allowed_modules: list[str] = Field(
        [],
        description="Packages (or dotted modules) `call:` may import besides the plan's folder.",
    )
    secret_names: list[str] = Field(
        list(DEFAULT_SECRET_NAMES),
        description="Globs of variable names whose values are masked in what stoic records.",
    )
    require_approval: list[str] = Field(
        [],
        description="Task ids (globs) or agent roles (role:NAME) that run only once approved.",
    )

    _patterns_compile = field_validator("forbidden_commands")(check_patterns)


_OWN_FOLDERS = frozenset(
    {"logs", "queue", "manifests", "runs", "escalations", "incidents", "calibration_log.md"}
)


class NotifierSettings(_Section):
    """One `[[notifiers]]` entry: where notices go, which ones, and how long it may take."""

    kind: Literal["console", "file", "webhook", "command"]
    events: list[
        Literal[
            "*",
            "paused",
            "resumed",
            "escalation_raised",
            "suggestion_created",
            "run_completed",
            "run_failed",
            "run_awaiting_human",
            "audit_failed",
            "audit_passed",
        ]
    ] = Field(["*"], description="The events it gets; * for all.")
    timeout: float = Field(5.0, gt=0, le=300, description="Seconds before delivery is given up.")
    path: str | None = Field(None, description="file: the NDJSON file (workspace-relative).")
    url: str | None = Field(None, pattern=r"^https?://", description="webhook: where to POST.")
    format: Literal["json", "slack"] = Field("json", description="webhook: the body's shape.")
    command: list[str] | None = Field(None, description="command: argv; the notice on stdin.")

    @field_validator("url")
    @classmethod
    def _a_url_httpx_can_post_to(cls, url: str | None) -> str | None:
        """Refused here, with its line, rather than when a notice is sent (a bad port raised)."""
        if url is None:
            return None
        parts = urlsplit(url)
        try:
            parts.port  # noqa: B018 - raises for a port out of range or not a number
        except ValueError as exc:
            raise ValueError(f"{url!r} has no usable port ({exc})") from None
        if not parts.hostname:
            raise ValueError(f"{url!r} names no host")
        return url

    @model_validator(mode="after")
    def _complete(self) -> NotifierSettings:
        needed = {"file": "path", "webhook": "url", "command": "command"}.get(self.kind)
        if needed is not None and not getattr(self, needed):
            raise ValueError(f"a {self.kind} notifier needs `{needed}`")
        if self.path is not None:
            parts = Path(self.path).parts
            if Path(self.path).is_absolute() or ".." in parts:
                raise ValueError(f"path {self.path!r} must stay inside the workspace")
            if parts and (parts[0] in _OWN_FOLDERS or self.path == "stoic.toml"):
                raise ValueError(
                    f"path {self.path!r} is one of stoic's own files; notices go elsewhere"
                    " (stoic never reads its notifications back)"
                )
        return self


SecretName = Annotated[str, StringConstraints(pattern=SECRET_NAME_PATTERN)]


class SecretSource(_Section):
    """One `[secrets]` entry: where a secret a plan names is read from."""

    file: str = Field(
        min_length=1, description="A file holding the value (workspace-relative or absolute)."
    )


class Settings(_Section):
    """Everything `stoic.toml` can set."""

    queue: QueueSettings = QueueSettings()
    review: ReviewSettings = ReviewSettings()
    runner: RunnerSettings = RunnerSettings()
    recovery: RecoverySettings = RecoverySettings()
    policy: PolicySettings = PolicySettings()
    agents: AgentSettings = AgentSettings()
    schedules: SchedulesSettings = SchedulesSettings()
    serve: ServeSettings = ServeSettings()
    gate: GateSettings = GateSettings()
    store: StoreSettings = StoreSettings()
    notifiers: list[NotifierSettings] = Field(
        default_factory=lambda: [
            NotifierSettings(
                kind="console",
                events=["paused", "resumed", "escalation_raised", "audit_failed"],
            )
        ]
    )
    secrets: dict[SecretName, SecretSource] = Field(
        default_factory=dict,
        description="Where secrets a plan names (`secrets:`) are read from, when not in the"
        " environment.",
    )

    def without_database(self) -> Settings:
        """These settings naming no database: the workspace's own files (`stoic --local`)."""
        return self.model_copy(update={"store": StoreSettings()})


_TOML_LINE = re.compile(r"\(at line (\d+), column (\d+)\)")


def load_settings(path: Path) -> Settings:
    """Read and validate `stoic.toml`; any problem is a ConfigError naming file and line."""
    try:
        text = read_bounded(path, MAX_SETTINGS_BYTES).decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except NotARegularFile as exc:
        raise ConfigError(f"{path}: is {exc.kind}, not a settings file") from exc
    except TooLarge as exc:
        raise ConfigError(f"{path}: is larger than 1 MiB; settings are a few lines") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        located = _TOML_LINE.search(message)
        where = f"{path}:{located.group(1)}" if located else str(path)
        message = _TOML_LINE.sub("", message).strip()
        raise ConfigError(f"{where}: invalid TOML: {message}{_twice_hint(text, message)}") from exc
    except ValueError as exc:  # tomllib reads integers with int(): thousands of digits fail
        line = _first_line(text, _LONG_NUMBER)
        where = f"{path}:{line}" if line else str(path)
        raise ConfigError(
            f"{where}: a number too large to read (hint: settings are small numbers)"
        ) from exc
    except RecursionError as exc:
        line = _nesting_line(text)
        where = f"{path}:{line}" if line else str(path)
        raise ConfigError(
            f"{where}: arrays or tables nest too deeply to read (hint: settings nest a few"
            " levels at most)"
        ) from exc
    found = _unfit_value(data)
    if found is not None:
        location, problem = found
        line = _line_of(text, location) if location else None
        if line is None and "deeper than" in problem:
            line = _first_line(text, _MANY_DOTS) or _nesting_line(text, _MAX_SETTINGS_DEPTH)
        where = f"{path}:{line}" if line else str(path)
        dotted = ".".join(location[:_MAX_SETTINGS_DEPTH])
        raise ConfigError(f"{where}: {shortened(dotted)}: {problem}")
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        location = [str(part) for part in error["loc"] if not isinstance(part, int)]
        key = location[-1] if location else ""
        line = _line_of(text, location)
        where = f"{path}:{line}" if line else str(path)
        dotted = ".".join(location)
        if error["type"] == "extra_forbidden":
            known = _known_keys(location[:-1])
            hint = closest(key, known)
            suggestion = f"; did you mean {hint!r}?" if hint else f" (known: {', '.join(known)})"
            raise ConfigError(f"{where}: unknown setting {dotted!r}{suggestion}") from exc
        raise ConfigError(
            f"{where}: {dotted}: {error['msg'].removeprefix('Value error, ')}"
        ) from exc


_LONG_NUMBER = re.compile(r"[0-9][0-9_]{200,}")


_DECLARED_TWICE = re.compile(r"Cannot declare \('([A-Za-z0-9_-]+)',\) twice")


def _twice_hint(text: str, message: str) -> str:
    """Where the table declared twice was first declared: `stoic init` writes every table,
    so a snippet pasted at the end repeats one; its settings go under the first."""
    named = _DECLARED_TWICE.search(message)
    if named is None:
        return ""
    table = re.compile(rf"^\s*\[\s*{re.escape(named.group(1))}\s*\]\s*(#.*)?$", re.MULTILINE)
    first = table.search(text)
    if first is None:
        return ""
    line = text.count("\n", 0, first.start()) + 1
    return (
        f" (hint: [{named.group(1)}] is at line {line} already: put the settings under it,"
        " where they are listed commented)"
    )


def _first_line(text: str, pattern: re.Pattern[str]) -> int | None:
    found = pattern.search(text)
    return text.count("\n", 0, found.start()) + 1 if found else None


def _nesting_line(text: str, deepest: int = 100) -> int | None:
    """The line where brackets first nest past `deepest` (strings not told apart: a hint)."""
    depth = 0
    for number, line in enumerate(text.splitlines(), start=1):
        for char in line:
            if char in "[{":
                depth += 1
                if depth > deepest:
                    return number
            elif char in "]}":
                depth -= 1
    return None


_MAX_SETTINGS_DEPTH = 16
"""Settings nest three levels at most; deeper data is refused before anything walks it."""
_MANY_DOTS = re.compile(r"^[^=#\n]*(?:\.[^.=#\n]*){16,}", re.MULTILINE)


def _unfit_value(data: dict[str, Any]) -> tuple[list[str], str] | None:
    """The first value no setting can hold (nested too deep, an integer beyond MAX_INT_BITS,
    an infinite float) and the keys leading to it. Iterative: the data may be deep."""
    pending: list[tuple[Any, tuple[str, ...], int]] = [(data, (), 0)]
    while pending:
        value, location, depth = pending.pop()
        if depth > _MAX_SETTINGS_DEPTH:
            return list(location), f"nests deeper than {_MAX_SETTINGS_DEPTH} levels"
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
            large = shortened(str(value))
            return list(location), f"{large} is too large (at most {MAX_INT_BITS} bits)"
        if isinstance(value, float) and not math.isfinite(value):
            return list(location), f"{value} is not a finite number"
        if isinstance(value, dict):
            pending.extend((item, (*location, str(key)), depth + 1) for key, item in value.items())
        elif isinstance(value, list):  # an item's line is its list's line
            pending.extend((item, location, depth + 1) for item in value)
    return None


def _known_keys(section_path: list[str]) -> list[str]:
    model: type[BaseModel] = Settings
    for part in section_path:
        annotation = model.model_fields[part].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)


def _line_of(text: str, location: list[str]) -> int | None:
    """The line where a dotted key is set, found by walking the file's sections."""
    if not location:
        return None
    section, key = ".".join(location[:-1]), location[-1]
    current = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped.strip("[]").strip()
            if not section and current == key:
                return number
            continue
        if current == section and re.match(rf"{re.escape(key)}\s*=", stripped):
            return number
    return None
