"""The secrets a plan names (`secrets:` on a task or in `meta`): found before anything runs.

A value comes from stoic's own environment, else from the file `[secrets]` in `stoic.toml`
names. A secret that is named but found nowhere, or whose file cannot be read or is empty,
stops the run before it starts, as `stoic plan check` says it would.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from stoic.core.policy import MIN_SECRET_LENGTH
from stoic.plan.loader import Plan, PlanError
from stoic.plan.reading import NotARegularFile, TooLarge, read_bounded
from stoic.store.config import SecretSource
from stoic.store.confined import open_confined

__all__ = ["SecretsOfPlan", "secrets_of_plan"]

_SECRET_FILE_LIMIT = 64 * 1024


class SecretsOfPlan:
    """Each task's secrets by name, and what was wrong with any of them."""

    def __init__(self) -> None:
        self.by_task: dict[str, dict[str, str]] = {}
        self.errors: list[PlanError] = []

    def values(self) -> dict[str, str]:
        """Every secret value of the plan, by name: what is masked in the run's records."""
        found: dict[str, str] = {}
        for secrets in self.by_task.values():
            found.update(secrets)
        return found


def secrets_of_plan(
    plan: Plan,
    sources: Mapping[str, SecretSource],
    root: Path,
    environ: Mapping[str, str],
) -> SecretsOfPlan:
    """Look up every secret the plan names (relative `file =` paths are below `root`)."""
    result = SecretsOfPlan()
    meta = list(plan.document.meta.secrets or ())
    looked: dict[str, str | None] = {}
    for spec in plan.tasks:
        names = list(dict.fromkeys([*meta, *(spec.secrets or ())]))
        if not names:
            continue
        line, column = plan.task_positions.get(spec.id, (1, 1))
        given: dict[str, str] = {}
        for name in names:
            if name not in looked:
                value, error = _look_up(name, sources, root, environ)
                looked[name] = value
                if error is not None:
                    result.errors.append(PlanError(line, column, error[0], error[1]))
            value = looked[name]
            if value is not None:
                given[name] = value
        result.by_task[spec.id] = given
    return result


def _look_up(
    name: str, sources: Mapping[str, SecretSource], root: Path, environ: Mapping[str, str]
) -> tuple[str | None, tuple[str, str] | None]:
    """(the value, or None; the error and its hint, or None)."""
    value = environ.get(name)
    where = f"the environment variable {name}"
    if value is None:
        source = sources.get(name)
        if source is None:
            return None, (
                f"secret {name} is named but found nowhere: not in stoic's environment,"
                " not in [secrets] of stoic.toml",
                f'export {name}=…, or add {name} = {{file = "…"}} under [secrets]',
            )
        path = Path(source.file)
        inside = not path.is_absolute()
        path = root / path if inside else path
        where = f"the file {path} (secret {name})"
        try:
            raw = _read_inside(root, path) if inside else read_bounded(path, _SECRET_FILE_LIMIT)
            value = raw.decode("utf-8").rstrip("\r\n")
        except (OSError, NotARegularFile, TooLarge, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return None, (
                f"secret {name} cannot be read from {path}: {why}",
                "fix the file, or the path under [secrets] in stoic.toml",
            )
    if not value:
        return None, (f"secret {name} is empty in {where}", "give it its value")
    if len(value) < MIN_SECRET_LENGTH:
        return None, (
            f"secret {name} is shorter than {MIN_SECRET_LENGTH} characters in {where}:"
            " too short to mask without hiding ordinary text",
            "use the real secret, or pass a short value with env: instead",
        )
    return value, None


def _read_inside(root: Path, path: Path) -> bytes:
    """A secret file named relative to the workspace, read as every workspace file is: never
    through a link (a task user that may write there could plant one to a file only stoic's
    user can read, and have its contents handed to a task), a plain file, bounded."""
    fd = open_confined(root, path, os.O_RDONLY)
    try:
        if os.fstat(fd).st_size > _SECRET_FILE_LIMIT:
            raise TooLarge(f"larger than {_SECRET_FILE_LIMIT // 1024} KiB")
        return os.read(fd, _SECRET_FILE_LIMIT)  # a plain file: one read holds it whole
    finally:
        os.close(fd)
