"""Reading a plan file: every error at once, each with line, column, what is wrong and a fix.

Three passes over one parse: the YAML itself (syntax, repeated keys), the pydantic models
(types, unknown keys, statuses, timeouts and budgets), and the graph (ids, dependencies,
cycles). The graph pass reads the raw data, so it runs even when the models found errors.
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from stoic.core import next_steps
from stoic.core.graph import DONE_STATES, TaskGraph, TaskState, find_cycle
from stoic.core.limits import MAX_PLAN_BYTES
from stoic.core.text import brief_repr, counted, shortened
from stoic.core.vocabulary import closest
from stoic.exceptions import UsageError
from stoic.plan.file_order import file_order
from stoic.plan.foreign import as_stoic_tasks
from stoic.plan.models import (
    CONCURRENCY_LIMIT_MAX,
    FOREIGN_META_KEYS,
    FOREIGN_TASK_KEYS,
    Budget,
    Concurrency,
    HttpRequest,
    Meta,
    PlanDocument,
    Section,
    StatusWord,
    TaskSpec,
    Validation,
    Verifier,
)
from stoic.plan.reading import NotARegularFile, TooLarge, read_bounded
from stoic.plan.yaml_source import LocatedDict, LocatedList, YamlSyntaxError, load_located

__all__ = ["Plan", "PlanError", "PlanInvalid", "parse_plan", "read_plan"]

_MAX_CYCLES_REPORTED = 20


@dataclass(frozen=True, slots=True)
class PlanError:
    """One thing wrong with a plan, where it is, and how to fix it."""

    line: int
    column: int
    message: str
    hint: str = ""

    def format(self, path: str | Path) -> str:
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"{path}:{self.line}:{self.column}: {self.message}{hint}"


class PlanInvalid(UsageError):
    """A plan that cannot run; carries every error found."""

    def __init__(self, path: str | Path, errors: Sequence[PlanError]) -> None:
        self.path = str(path)
        self.errors = tuple(errors)
        count = len(self.errors)
        lines = [f"{self.path} is not a valid plan ({counted(count, 'error')}):"]
        lines.extend(error.format(self.path) for error in self.errors)
        super().__init__("\n".join(lines))


@dataclass(frozen=True, slots=True)
class Plan:
    """A validated plan and the exact text it was read from."""

    path: Path
    text: str
    sha256: str
    document: PlanDocument
    tasks: tuple[TaskSpec, ...]
    graph: TaskGraph
    task_positions: Mapping[str, tuple[int, int]]
    """Where each task's id stands in the file, for errors found later."""

    @property
    def name(self) -> str:
        return self.document.meta.name or self.path.stem

    def states(self) -> list[TaskState]:
        """The state of each task (in `graph.ids` order) as the file's statuses say."""
        return [task.state for task in self.tasks]

    def done_in_file(self) -> dict[str, str]:
        """Each task the file marks done (succeeded, completed, verified or skipped), with the
        word it used: a run records these as done instead of running them."""
        return {
            task.id: task.status.value
            for task in self.tasks
            if task.status is not None and task.state in DONE_STATES
        }


def read_plan(path: str | Path) -> Plan:
    """Read and validate the plan at `path`; raises PlanInvalid listing every error."""
    plan_path = Path(path)
    try:
        raw = read_bounded(plan_path, MAX_PLAN_BYTES)
    except FileNotFoundError:
        raise PlanInvalid(path, [PlanError(1, 1, "no such file", "check the path")]) from None
    except (IsADirectoryError, NotARegularFile) as exc:
        kind = exc.kind if isinstance(exc, NotARegularFile) else "a folder"
        error = PlanError(1, 1, f"is {kind}, not a plan file", "name a YAML file")
        raise PlanInvalid(path, [error]) from None
    except TooLarge:
        error = PlanError(
            1, 1, f"is larger than {MAX_PLAN_BYTES // (1024 * 1024)} MiB", "split the plan"
        )
        raise PlanInvalid(path, [error]) from None
    except OSError as exc:
        raise PlanInvalid(path, [PlanError(1, 1, f"cannot be read: {exc.strerror}", "")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        error = PlanError(line, column, "not UTF-8 text", "save the file as UTF-8")
        raise PlanInvalid(path, [error]) from None
    return parse_plan(text, plan_path)


def parse_plan(text: str, path: str | Path = "<plan>") -> Plan:
    """Validate plan text; raises PlanInvalid listing every error, sorted by position."""
    try:
        data, problems = load_located(text)
    except YamlSyntaxError as exc:
        hint = exc.hint or "check the indentation and quoting on this line and the one before"
        raise PlanInvalid(path, [PlanError(exc.line, exc.column, exc.message, hint)]) from None
    errors = [PlanError(p.line, p.column, p.message, p.hint) for p in problems]
    if data is None:
        errors.append(PlanError(1, 1, "the plan is empty", "add `tasks:` with at least one task"))
        raise PlanInvalid(path, errors)
    if not isinstance(data, LocatedDict):
        line, column = data.position if isinstance(data, LocatedList) else (1, 1)
        message = "a plan is a mapping with `tasks:` (or `sections:`) at the top"
        hint = f"see {next_steps.plan_schema()}"
        raise PlanInvalid(path, [PlanError(line, column, message, hint)])
    document: PlanDocument | None = None
    enabled = gc.isenabled()
    gc.disable()  # every model built here survives; a collection would only walk them
    try:
        document = PlanDocument.model_validate(data)
    except ValidationError as exc:
        errors.extend(_model_errors(exc, data))
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
    graph_errors, graph, positions = _check_graph(data)
    errors.extend(graph_errors)
    if errors:
        raise PlanInvalid(path, sorted(set(errors), key=lambda e: (e.line, e.column, e.message)))
    assert document is not None and graph is not None
    tasks = as_stoic_tasks(document.meta.validation, document.all_tasks())
    sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Plan(Path(path), text, sha256, document, tasks, graph, positions)


# -- model errors ------------------------------------------------------------------------------

_MODEL_OF_KEY: Mapping[str, type[BaseModel]] = {
    "meta": Meta,
    "tasks": TaskSpec,
    "sections": Section,
    "budget": Budget,
    "http": HttpRequest,
    "verify": Verifier,
    "concurrency": Concurrency,
    "validation": Validation,
}
_CARRIED_KEYS: Mapping[type[BaseModel], frozenset[str]] = {
    TaskSpec: FOREIGN_TASK_KEYS,
    Meta: FOREIGN_META_KEYS,
    Section: frozenset({"status"}),
}
_NATIVE_KEYS: Mapping[type[BaseModel], list[str]] = {
    model: sorted(
        field.alias or name
        for name, field in model.model_fields.items()
        if name not in _CARRIED_KEYS.get(model, frozenset())
    )
    for model in (
        PlanDocument,
        Meta,
        TaskSpec,
        Section,
        Budget,
        HttpRequest,
        Verifier,
        Concurrency,
        Validation,
    )
}
_STATUSES = [word.value for word in StatusWord]


@dataclass(slots=True)
class _Located:
    position: tuple[int, int]
    key_position: tuple[int, int] | None
    matched: tuple[Any, ...]
    model: type[BaseModel]
    task_id: str | None


def _locate(data: LocatedDict, loc: tuple[Any, ...]) -> _Located:
    node: Any = data
    position, key_position = data.position, None
    matched: list[Any] = []
    model: type[BaseModel] = PlanDocument
    task_id: str | None = None
    for part in loc:
        if isinstance(node, LocatedDict) and part in node:
            key_position = node.key_positions[part]
            position = node.value_positions[part]
            node = node[part]
            if isinstance(part, str) and part in _MODEL_OF_KEY:
                model = _MODEL_OF_KEY[part]
        elif isinstance(node, LocatedList) and isinstance(part, int) and 0 <= part < len(node):
            position = node.item_positions[part]
            node = node[part]
            if model is TaskSpec and isinstance(node, dict) and isinstance(node.get("id"), str):
                task_id = node["id"]
        else:
            break
        matched.append(part)
    return _Located(position, key_position, tuple(matched), model, task_id)


def _model_errors(exc: ValidationError, data: LocatedDict) -> Iterator[PlanError]:
    seen: set[tuple[Any, ...]] = set()
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        where = _locate(data, loc)
        if where.matched in seen:
            continue  # one message per place: a union reports each alternative
        seen.add(where.matched)
        yield _explain(error, loc, where)


def _explain(error: Mapping[str, Any], loc: tuple[Any, ...], where: _Located) -> PlanError:
    kind: str = error["type"]
    value = error.get("input")
    field = next((part for part in reversed(where.matched) if isinstance(part, str)), "plan")
    owner = f"task {brief_repr(where.task_id)}: " if where.task_id else ""
    line, column = where.position
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = _NATIVE_KEYS[where.model]
        line, column = where.key_position or where.position
        guess = closest(key, allowed)
        hint = f"did you mean {guess!r}?" if guess else f"known keys: {', '.join(allowed)}"
        return PlanError(line, column, f"{owner}unknown key {brief_repr(key)}", hint)
    if kind == "enum" and field == "status":
        guess = closest(str(value), _STATUSES)
        hint = f"did you mean {guess!r}?" if guess else f"statuses: {', '.join(_STATUSES)}"
        return PlanError(line, column, f"{owner}unknown status {brief_repr(value)}", hint)
    if kind == "missing":
        key = str(loc[-1])
        return PlanError(line, column, f"{owner}missing {brief_repr(key)}", f"add `{key}:`")
    if field in ("timeout", "max_seconds"):
        return PlanError(
            line,
            column,
            f"{owner}{field} must be a number of seconds greater than 0, not {brief_repr(value)}",
            "write 600 for ten minutes",
        )
    if field in ("max_attempts", "max_cost", "max_attempts_default"):
        smallest = "0" if field == "max_cost" else "1"
        return PlanError(
            line,
            column,
            f"{owner}{field} must be a number of at least {smallest}, not {brief_repr(value)}",
            "budgets are plain numbers",
        )
    if field in ("concurrency", "limit"):
        what = (
            "concurrency must be a mapping with a limit"
            if field == "concurrency"
            else f"concurrency.limit must be a whole number from 1 to {CONCURRENCY_LIMIT_MAX}"
        )
        return PlanError(
            line,
            column,
            f"{what}, not {brief_repr(value)}",
            "write concurrency: {limit: 2} to allow two live runs of this plan at once",
        )
    if field == "id" and kind == "string_type":
        return PlanError(
            line,
            column,
            f"task id {brief_repr(value)} is not text",
            f"quote it: id: '{shortened(str(value))}'",
        )
    if field == "id" and kind == "string_pattern_mismatch":
        return PlanError(
            line,
            column,
            f"task id {brief_repr(value)} has characters ids cannot hold",
            "use letters, digits, '.', '_' and '-', starting with a letter or digit",
        )
    if field == "run":
        return PlanError(
            line,
            column,
            f"{owner}run must be an argv list of strings, not {brief_repr(value)}",
            'write run: ["make", "build"] (or a string with shell: true)',
        )
    if field == "call":
        return PlanError(
            line,
            column,
            f"{owner}call {brief_repr(value)} is not a function",
            'write "module:function"',
        )
    message = f"{owner}{field}: {error['msg']}"
    return PlanError(line, column, message, f"see {next_steps.plan_schema()}")


# -- graph errors ------------------------------------------------------------------------------


def _raw_tasks(data: LocatedDict) -> Iterator[LocatedDict]:
    tasks = data.get("tasks")
    if isinstance(tasks, LocatedList):
        yield from (task for task in tasks if isinstance(task, LocatedDict))
    sections = data.get("sections")
    if isinstance(sections, LocatedList):
        for section in sections:
            inner = section.get("tasks") if isinstance(section, LocatedDict) else None
            if isinstance(inner, LocatedList):
                yield from (task for task in inner if isinstance(task, LocatedDict))


def _check_graph(
    data: LocatedDict,
) -> tuple[list[PlanError], TaskGraph | None, dict[str, tuple[int, int]]]:
    errors: list[PlanError] = []
    if "tasks" in data and "sections" in data:
        line, column = data.key_positions["sections"]
        errors.append(
            PlanError(
                line, column, "a plan has `tasks:` or `sections:`, not both", "use one of them"
            )
        )
    tasks = list(_raw_tasks(data))
    if not tasks:
        key = "tasks" if "tasks" in data else "sections" if "sections" in data else None
        line, column = data.key_positions[key] if key else data.position
        errors.append(
            PlanError(line, column, "the plan has no tasks", "add at least one task with an id")
        )
        return errors, None, {}
    index_of: dict[str, int] = {}
    positions: dict[str, tuple[int, int]] = {}
    first_line: dict[str, int] = {}
    for task in tasks:
        task_id = task.get("id")
        if not isinstance(task_id, str):
            if "id" not in task:
                errors.append(PlanError(*task.position, "a task without an id", "add `id:`"))
            continue
        if task_id in first_line:
            errors.append(
                PlanError(
                    *task.value_positions["id"],
                    f"duplicate task id {brief_repr(task_id)}"
                    f" (first on line {first_line[task_id]})",
                    "give every task its own id",
                )
            )
        else:
            positions[task_id] = task.value_positions["id"]
            first_line[task_id] = positions[task_id][0]
            index_of[task_id] = len(index_of)
    numbered: list[tuple[int, ...]] = [()] * len(index_of)
    lookup = index_of.get
    for task in tasks:
        task_id = task.get("id")
        if "depends_on" in task and "dependencies" in task:
            errors.extend(_conflicting_keys(task))
        if _may_have_executor_errors(task):
            errors.extend(_executor_errors(task))
        deps = task.get("depends_on")
        if deps is None:
            deps = task.get("dependencies")
        known: list[int] = []
        if type(deps) is LocatedList:
            for dep in deps:
                index = lookup(dep) if type(dep) is str else -1
                if index is None:
                    errors.append(_unknown_dependency(task_id, dep, deps, index_of))
                elif index >= 0:
                    known.append(index)
        if type(task_id) is str and not numbered[index_of[task_id]]:
            numbered[index_of[task_id]] = tuple(known)
    in_file_order = "sections" in data and "tasks" not in data
    if in_file_order:
        numbered = file_order(tasks, index_of, numbered)
    ids = tuple(index_of)
    try:
        graph = TaskGraph.from_indices(ids, tuple(numbered))
    except ValueError:
        edges = {ids[i]: [ids[d] for d in deps] for i, deps in enumerate(numbered)}
        errors.extend(_cycle_errors(edges, positions, in_file_order))
        return errors, None, positions
    return errors, graph, positions


_EXECUTOR_KEYS = ("run", "call", "http", "agent")


def _unknown_dependency(
    task_id: object, dep: str, deps: LocatedList, index_of: Mapping[str, int]
) -> PlanError:
    guess = closest(dep, index_of)
    hint = f"did you mean {guess!r}?" if guess else "list ids of tasks in this plan"
    return PlanError(
        *deps.item_positions[deps.index(dep)],
        f"task {brief_repr(task_id)} depends on {brief_repr(dep)},"
        " which is not a task in this plan",
        hint,
    )


def _may_have_executor_errors(task: LocatedDict) -> bool:
    """False for the common case, checked cheaply: one non-empty argv list, no shell key."""
    given = ("run" in task) + ("call" in task) + ("http" in task) + ("agent" in task)
    if given == 0:
        return False
    run = task.get("run")
    return given > 1 or type(run) is not LocatedList or not run or "shell" in task


def _executor_errors(task: LocatedDict) -> Iterator[PlanError]:
    given = [key for key in _EXECUTOR_KEYS if key in task]
    owner = f"task {brief_repr(task.get('id'))}"
    if len(given) > 1:
        yield PlanError(
            *task.key_positions[given[1]],
            f"{owner} has both {given[0]!r} and {given[1]!r}",
            "a task runs one thing: keep one of run, call, http, agent",
        )
    command = task.get("run")
    shell = task.get("shell") is True
    if isinstance(command, str) and not shell:
        yield PlanError(
            *task.value_positions["run"],
            f"{owner}: run is a string, which needs a shell",
            f"write an argv list like {brief_repr(command.split())}, or add `shell: true`",
        )
    elif isinstance(command, list) and shell:
        yield PlanError(
            *task.value_positions["run"],
            f"{owner}: shell: true takes run as one string",
            "write the command as a string, or drop `shell: true`",
        )
    elif isinstance(command, list) and not command:
        yield PlanError(*task.value_positions["run"], f"{owner}: run is empty", "name a command")


def _conflicting_keys(task: LocatedDict) -> Iterator[PlanError]:
    first, second = task.get("depends_on"), task.get("dependencies")
    same = (
        isinstance(first, list)
        and isinstance(second, list)
        and sorted(map(str, first)) == sorted(map(str, second))
    )
    if not same:
        yield PlanError(
            *task.key_positions["dependencies"],
            f"task {brief_repr(task.get('id'))} has depends_on {brief_repr(first)}"
            f" and dependencies {brief_repr(second)}",
            "keep one key; they mean the same",
        )


def _cycle_errors(
    edges: dict[str, list[str]], positions: Mapping[str, tuple[int, int]], in_file_order: bool
) -> Iterator[PlanError]:
    hint = (
        "tasks under `sections:` also run in file order: move the dependency above the task"
        if in_file_order
        else "remove one of these dependencies"
    )
    for _ in range(_MAX_CYCLES_REPORTED):
        cycle = find_cycle(edges)
        if cycle is None:
            return
        yield PlanError(
            *positions[cycle[0]],
            f"dependency cycle: {' → '.join(cycle)}",
            hint,
        )
        edges[cycle[-2]] = [dep for dep in edges[cycle[-2]] if dep != cycle[-1]]
