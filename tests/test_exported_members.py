"""The public API is pinned both ways: every exported name exists, and every public name of a
public module is exported. The README names these modules; the rest may change without notice."""

from __future__ import annotations
import __future__

import importlib
import re
from types import ModuleType

import pytest

import stoic
import stoic.errors
import stoic.failures
from tests.conftest import PROJECT_ROOT

PUBLIC_MODULES = ["stoic", "stoic.errors", "stoic.exceptions", "stoic.failures", "stoic.steps"]
EXPORTED_DUNDERS = {"__version__"}


def _public_names(module: ModuleType) -> list[str]:
    """What `from module import …` offers: its names that are not private, not a module (a
    submodule imported beside it) and not the `annotations` compiler switch."""
    return sorted(
        name
        for name, value in ((name, getattr(module, name)) for name in dir(module))
        if (not name.startswith("_") or name in EXPORTED_DUNDERS)
        and not isinstance(value, ModuleType)
        and value is not __future__.annotations
    )


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_exported_name_exists(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(exported) == len(set(exported))
    assert [n for n in exported if not hasattr(module, n)] == []


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_public_name_is_exported(name: str) -> None:
    module = importlib.import_module(name)
    assert sorted(module.__all__) == _public_names(module)


def test_the_package_exports_the_workspace_its_errors_and_the_task_calls() -> None:
    assert sorted(stoic.__all__, key=str.casefold) == sorted(
        [
            "__version__",
            "AuditReport",
            "ConfigError",
            "Decision",
            "escalate",
            "InvalidDecision",
            "LogCorrupt",
            "LogTornTail",
            "ProjectionMismatch",
            "Record",
            "step_done",
            "StoicError",
            "UsageError",
            "Violation",
            "ViolationCode",
            "WaitTimedOut",
            "Workspace",
            "WorkspaceError",
            "WorkspaceExists",
            "WorkspaceNotFound",
            "WorkspaceNotWritable",
            "WorkspacePaused",
            "WorkspaceStatus",
        ],
        key=str.casefold,
    )


def test_stoic_errors_names_the_same_failures_as_stoic_failures() -> None:
    from stoic.errors import RateLimited as OldName
    from stoic.errors import Timeout, escalate
    from stoic.failures import RateLimited, TaskFailure

    assert OldName is RateLimited
    assert stoic.errors.__all__ == stoic.failures.__all__
    for name in stoic.failures.__all__:
        assert getattr(stoic.errors, name) is getattr(stoic.failures, name), name
    assert issubclass(Timeout, TaskFailure) and not issubclass(Timeout, stoic.StoicError)
    assert escalate is stoic.escalate is stoic.failures.escalate


def test_the_failures_a_task_raises_are_not_stoic_errors() -> None:
    failures = [getattr(stoic.failures, n) for n in stoic.failures.__all__]
    classes = [f for f in failures if isinstance(f, type) and issubclass(f, Exception)]
    assert classes and all(issubclass(c, stoic.failures.TaskFailure) for c in classes)
    assert not any(issubclass(c, stoic.StoicError) for c in classes)


def test_the_readme_names_the_public_modules() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("### The public API", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(stoic(?:\.\w+)?)`", section))
    assert set(PUBLIC_MODULES) <= named


def test_importing_what_a_task_uses_loads_no_part_of_the_control_plane() -> None:
    """A task's worker imports `stoic.steps` and `stoic.errors`; `stoic.Workspace` (services,
    runtime, store) is loaded only when it is asked for."""
    import subprocess
    import sys

    probe = (
        "import sys, stoic.steps, stoic.errors, stoic.core.records\n"
        "print(sorted(m for m in sys.modules if m.startswith(('stoic.services', 'stoic.run',"
        " 'stoic.store'))))\n"
        "import stoic\n"
        "print(stoic.Workspace.__module__)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["[]", "stoic.services.workspace"]


def test_the_workspace_retries_a_failed_task_as_stoic_retry_does() -> None:
    import inspect

    parameters = inspect.signature(stoic.Workspace.retry).parameters
    assert list(parameters)[:3] == ["self", "run_id", "tasks"]
    keyword_only = [p.name for p in parameters.values() if p.kind is p.KEYWORD_ONLY]
    assert keyword_only == ["reason", "actor", "workers", "reporter"]
    assert all(parameters[name].default is inspect.Parameter.empty for name in ("reason", "actor"))
