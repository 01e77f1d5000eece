"""Policy and budget checks before every attempt (DESIGN §7): pure functions over data.

A retry never bypasses them: they run before first attempts, automatic retries and approved
recoveries alike.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from stoic.core.records import Decision

__all__ = [
    "CUT_SECRET_BYTES",
    "DEFAULT_ENV_PASSTHROUGH",
    "DEFAULT_SECRET_NAMES",
    "MASKED_VARIABLE",
    "MIN_SECRET_LENGTH",
    "SECRET_NAME_PATTERN",
    "BudgetLimits",
    "Policy",
    "Spent",
    "StreamMask",
    "approval_rule",
    "budget_violation",
    "check_patterns",
    "environment_secrets",
    "mask_decision",
    "mask_json",
    "mask_secrets",
    "module_violation",
    "policy_violation",
    "remaining_seconds",
    "secret_values",
]

DEFAULT_ENV_PASSTHROUGH = (
    "PATH",
    "HOME",
    "LANG",
    "LC_*",
    "TZ",
    "TMPDIR",
    "USER",
    "TERM",
    "STOIC_WORKSPACE",
)
"""What processes stoic starts see of its environment unless `env_passthrough` says more."""

SECRET_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
"""What a name in `secrets:` (a plan's or `stoic.toml`'s) may be: an environment variable's."""

DEFAULT_SECRET_NAMES = (
    "*TOKEN*",
    "*SECRET*",
    "*PASSWORD*",
    "*PASSWD*",
    "*CREDENTIAL*",
    "*_KEY",
    "*_KEY_*",
    "*APIKEY*",
    "*AUTH*",
    "*COOKIE*",
    "*SESSION*",
    "*WEBHOOK*",
)
"""Variables whose values are masked wherever stoic records or shows what a process printed."""

MIN_SECRET_LENGTH = 4
"""Shorter values ("1", "yes") would mask ordinary text and hide nothing worth hiding."""


@dataclass(frozen=True, slots=True)
class Policy:
    """What may run: executors allowed, command patterns forbidden, environment passed on."""

    allowed_executors: frozenset[str] = frozenset({"shell", "python", "http", "agent"})
    forbidden_commands: tuple[re.Pattern[str], ...] = ()
    env_passthrough: tuple[tuple[str, ...], ...] = (DEFAULT_ENV_PASSTHROUGH,)
    """Glob lists; a variable reaches tasks when it matches a glob of every list."""
    require_approval: tuple[str, ...] = ()
    """Task-id globs, or `role:NAME` for agent roles, that need a person's approval to start."""
    allowed_modules: frozenset[str] | None = frozenset()
    """What `call:` may import besides the plan's folder (packages, or dotted modules in
    them); None only in a plan's policy that does not narrow the workspace's."""
    secret_names: tuple[str, ...] = DEFAULT_SECRET_NAMES
    """Globs of variable names whose values are masked in what is recorded or shown."""

    def tighten(self, other: Policy) -> Policy:
        """Both policies at once: a plan can narrow the workspace's policy, never widen it."""
        if self.allowed_modules is None or other.allowed_modules is None:
            modules = (
                self.allowed_modules if other.allowed_modules is None else other.allowed_modules
            )
        else:
            modules = self.allowed_modules & other.allowed_modules
        return Policy(
            allowed_executors=self.allowed_executors & other.allowed_executors,
            forbidden_commands=self.forbidden_commands + other.forbidden_commands,
            env_passthrough=self.env_passthrough + other.env_passthrough,
            require_approval=self.require_approval + other.require_approval,
            allowed_modules=modules,
            secret_names=tuple(dict.fromkeys(self.secret_names + other.secret_names)),
        )

    def passes_env(self, name: str) -> bool:
        return all(
            any(fnmatch.fnmatchcase(name, glob) for glob in globs) for globs in self.env_passthrough
        )

    def is_secret(self, name: str) -> bool:
        return _matcher(self.secret_names).match(name.upper()) is not None

    def module_allowed(self, module: str) -> bool:
        """Named in `allowed_modules`, itself or a package it is in."""
        allowed = self.allowed_modules or frozenset()
        parts = module.split(".")
        return any(".".join(parts[:end]) in allowed for end in range(1, len(parts) + 1))

    @classmethod
    def build(
        cls,
        allowed_executors: Iterable[str] | None,
        forbidden_commands: Iterable[str],
        env_passthrough: Iterable[str] | None,
        require_approval: Iterable[str] = (),
        allowed_modules: Iterable[str] | None = (),
        secret_names: Iterable[str] = DEFAULT_SECRET_NAMES,
    ) -> Policy:
        return cls(
            allowed_executors=(
                frozenset(allowed_executors)
                if allowed_executors is not None
                else cls().allowed_executors
            ),
            forbidden_commands=tuple(re.compile(pattern) for pattern in forbidden_commands),
            env_passthrough=(
                (tuple(env_passthrough),)
                if env_passthrough is not None
                else (DEFAULT_ENV_PASSTHROUGH,)
            ),
            require_approval=tuple(require_approval),
            allowed_modules=frozenset(allowed_modules) if allowed_modules is not None else None,
            secret_names=tuple(secret_names),
        )


def check_patterns(patterns: list[str]) -> list[str]:
    """Forbidden-command patterns must compile; raises ValueError naming the bad one."""
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from None
    return patterns


def approval_rule(
    policy: Policy, task_id: str, role: str | None, approval: str | None
) -> str | None:
    """Why a task may start only once a person approves it, or None."""
    if approval == "required":
        return "the task is marked approval: required"
    for rule in policy.require_approval:
        if rule.startswith("role:"):
            if role is not None and rule[5:] == role:
                return f"role {role!r} requires approval (policy require_approval)"
        elif fnmatch.fnmatchcase(task_id, rule):
            return f"task {task_id!r} requires approval (policy require_approval {rule!r})"
    return None


def policy_violation(policy: Policy, executor: str, command: str) -> str | None:
    """The rule an attempt would break, or None. `command` is the argv as one shell-quoted line."""
    if executor not in policy.allowed_executors:
        allowed = ", ".join(sorted(policy.allowed_executors)) or "none"
        return f"executor {executor!r} is not allowed (allowed: {allowed})"
    for pattern in policy.forbidden_commands:
        if pattern.search(command):
            return f"command matches forbidden pattern {pattern.pattern!r}"
    return None


def module_violation(policy: Policy, call: str, *, in_plan_folder: bool) -> str | None:
    """Why `call: module:function` may not be imported, or None.

    The caller says whether the module's top-level package is a file or folder of the plan's
    folder (I/O this module does not do).
    """
    module = call.partition(":")[0]
    if in_plan_folder or policy.module_allowed(module):
        return None
    return (
        f"module {module!r} is neither in the plan's folder nor in policy allowed_modules"
        " (call: imports only the plan's own modules and the packages named there)"
    )


def secret_values(policy: Policy, env: Mapping[str, str]) -> dict[str, str]:
    """The values of the named secrets in `env`, by variable name, longest first."""
    found = {
        name: value
        for name, value in env.items()
        if len(value) >= MIN_SECRET_LENGTH and policy.is_secret(name)
    }
    return dict(sorted(found.items(), key=lambda item: -len(item[1])))


MASKED_VARIABLE = "STOIC_MASKED"
"""The names (comma-separated) of the secrets a task declared: set in its environment so that
stoic's own commands it runs — the gate's hook, `stoic mcp` — mask their values too."""


def environment_secrets(policy: Policy, env: Mapping[str, str]) -> dict[str, str]:
    """The secret values of a process's environment, by variable name, longest first: the
    variables `MASKED_VARIABLE` names and those the policy's `secret_names` match."""
    declared = {
        name: value
        for name in env.get(MASKED_VARIABLE, "").split(",")
        if len(value := env.get(name, "")) >= MIN_SECRET_LENGTH
    }
    found = {**secret_values(policy, env), **declared}
    return dict(sorted(found.items(), key=lambda item: -len(item[1])))


def mask_secrets(text: str, secrets: Mapping[str, str]) -> str:
    """`text` with every secret value replaced by a mark naming its variable; the longest
    first, so that a secret inside a longer one leaves nothing of the longer one behind."""
    for name, value in sorted(secrets.items(), key=lambda item: -len(item[1])):
        if value:
            text = text.replace(value, _mark(name))
    return text


def mask_json(value: Any, secrets: Mapping[str, str]) -> Any:
    """A JSON value with every secret masked in its strings (keys included)."""
    if not secrets:
        return value
    if isinstance(value, str):
        return mask_secrets(value, secrets)
    if isinstance(value, Mapping):
        return {mask_secrets(str(k), secrets): mask_json(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_json(item, secrets) for item in value]
    return value


_STOICS_OWN = frozenset(
    {"plan_sha256", "plan_copy", "plan_dir", "log", "outputs_file", "attempt_kind"}
)
"""A record's own keys whose values stoic makes and reads back (digests, its own files' paths,
an attempt's kind): no task's text is there, and a short secret found inside one must not
rewrite it (a continue checks the plan's digest, the audit an outputs file's)."""


def _masked_fields(fields: Mapping[str, Any], secrets: Mapping[str, str]) -> dict[str, Any]:
    return {
        mask_secrets(key, secrets): value if key in _STOICS_OWN else mask_json(value, secrets)
        for key, value in fields.items()
    }


def mask_decision(decision: Decision, secrets: Mapping[str, str]) -> Decision:
    """A record about to be written, with every secret masked in its free text."""
    if not secrets:
        return decision
    return replace(
        decision,
        decision_reason=mask_secrets(decision.decision_reason, secrets),
        decision_inputs=_masked_fields(decision.decision_inputs, secrets),
        details=_masked_fields(decision.details, secrets),
    )


def _mark(name: str) -> str:
    return f"[{name} masked]"


CUT_SECRET_BYTES = 4
"""How much of a secret an output cut off inside it must show to be masked as that secret: fewer
bytes that merely look like a secret's start (an output ending `…e` beside a secret `e…`) are
left as written, and three bytes of a secret give little away."""


class StreamMask:
    """Masks secrets in a byte stream that arrives in chunks: a secret split across two chunks
    is masked too, since the end of each chunk that could begin one is held back (at most the
    longest secret's length less one byte) until the next chunk or `flush`."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        pairs = sorted(
            ((value.encode(), _mark(name).encode()) for name, value in secrets.items() if value),
            key=lambda pair: -len(pair[0]),
        )
        self._marks = dict(pairs)
        self._longest = max((len(value) for value, _ in pairs), default=0)
        self._pattern = (
            re.compile(b"|".join(re.escape(value) for value, _ in pairs)) if pairs else None
        )
        self._carry = b""

    def feed(self, chunk: bytes) -> bytes:
        """What of the stream so far can be written now, masked."""
        if self._pattern is None:
            return chunk
        data = self._carry + chunk
        limit = max(0, len(data) - self._longest + 1)  # a secret starting before it fits
        out: list[bytes] = []
        done = 0
        for found in self._pattern.finditer(data):
            if found.start() >= limit:
                break
            out += [data[done : found.start()], self._marks[found.group()]]
            done = found.end()
        cut = max(done, limit)
        out.append(data[done:cut])
        self._carry = data[cut:]
        return b"".join(out)

    def flush(self) -> bytes:
        """The rest of the stream, masked; an end cut off inside a secret (a task stopped while
        it wrote one) is masked as the secret it begins, once `CUT_SECRET_BYTES` of it show."""
        rest, self._carry = self._carry, b""
        if self._pattern is None or not rest:
            return rest
        masked = self._pattern.sub(lambda found: self._marks[found.group()], rest)
        cut = max(
            (
                (size, mark)
                for value, mark in self._marks.items()
                for size in range(CUT_SECRET_BYTES, min(len(value), len(masked) + 1))
                if masked.endswith(value[:size])
            ),
            default=None,
        )
        return masked if cut is None else masked[: -cut[0]] + cut[1]


@dataclass(frozen=True, slots=True)
class BudgetLimits:
    max_seconds: float | None = None
    max_attempts: int | None = None
    max_cost: float | None = None


@dataclass(frozen=True, slots=True)
class Spent:
    seconds: float = 0.0
    attempts: int = 0
    cost: float = 0.0

    def __add__(self, other: Spent) -> Spent:
        return Spent(
            self.seconds + other.seconds, self.attempts + other.attempts, self.cost + other.cost
        )


def budget_violation(limits: BudgetLimits, spent: Spent, scope: str) -> str | None:
    """Which budget is used up before the next attempt, or None."""
    if limits.max_attempts is not None and spent.attempts >= limits.max_attempts:
        return f"{scope} budget max_attempts={limits.max_attempts} used up ({spent.attempts} made)"
    if limits.max_seconds is not None and spent.seconds >= limits.max_seconds:
        return (
            f"{scope} budget max_seconds={limits.max_seconds:g} used up"
            f" ({spent.seconds:.1f}s spent)"
        )
    if limits.max_cost is not None and spent.cost >= limits.max_cost:
        return f"{scope} budget max_cost={limits.max_cost:g} used up ({spent.cost:g} spent)"
    return None


def remaining_seconds(limits: Sequence[tuple[BudgetLimits, Spent]]) -> float | None:
    """The least wall time any budget still allows, or None when none limits time."""
    left = [
        limit.max_seconds - spent.seconds
        for limit, spent in limits
        if limit.max_seconds is not None
    ]
    return min(left) if left else None


@functools.lru_cache(maxsize=64)
def _matcher(globs: tuple[str, ...]) -> re.Pattern[str]:
    """One compiled pattern for a set of case-insensitive globs: every attempt asks which of
    its variables are secrets, so the globs are not translated each time."""
    if not globs:
        return re.compile(r"(?!)")
    return re.compile("|".join(f"(?:{fnmatch.translate(glob.upper())})" for glob in globs))
