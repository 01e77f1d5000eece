"""Plans: both formats load, every error is reported at once with line, column and a hint."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stoic
from stoic.plan.loader import PlanInvalid, parse_plan, read_plan
from tests.conftest import PROJECT_ROOT, run_cli

CORPUS = Path(os.environ.get("STOIC_CORPUS", PROJECT_ROOT.parent / "shared" / "corpus" / "plans"))


def errors_of(text: str) -> list[str]:
    with pytest.raises(PlanInvalid) as caught:
        parse_plan(text, "plan.yaml")
    return [error.format("plan.yaml") for error in caught.value.errors]


def test_native_plan_loads_with_every_executor() -> None:
    plan = parse_plan(
        """
meta: {name: release, budget: {max_seconds: 900, max_cost: 5}}
tasks:
  - id: build
    run: ["make", "build"]
    idempotent: true
    timeout: 600
  - id: notify
    http: {method: POST, url: "http://localhost:9/hook", json: {ok: true}}
    depends_on: [build]
  - id: tidy
    call: "tasks:tidy"
    params: {keep: 3}
    dependencies: [build]
  - id: greet
    run: echo hi | tr a-z A-Z
    shell: true
    budget: {max_attempts: 2}
"""
    )
    assert plan.name == "release"
    assert [task.id for task in plan.tasks] == ["build", "notify", "tidy", "greet"]
    assert plan.tasks[1].dependency_ids == ("build",)
    assert plan.tasks[2].dependency_ids == ("build",)
    assert plan.tasks[1].http is not None and plan.tasks[1].http.json_body == {"ok": True}
    assert plan.graph.dependencies == ((), (0,), (0,), ())


def test_foreign_sectioned_plan_with_bookkeeping_loads() -> None:
    plan = parse_plan(
        """
meta: {name: x, plan_doc: docs/x.md, created: '2026-01-01', max_attempts_default: 3}
sections:
  - id: phase-1
    name: One
    status: completed
    tasks:
      - id: '1.1'
        name: first
        status: verified
        attempts: 1
        completed_at: '2026-01-01T00:00:00'
        result_message: done
      - id: '1.2'
        status: in_progress
        dependencies: ['1.1']
        agent: coder
"""
    )
    assert [task.id for task in plan.tasks] == ["1.1", "1.2"]
    assert [state.value for state in plan.states()] == ["succeeded", "running"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "tasks:\n  - id: a\n    run: [x]\n  - id: a\n    run: [y]\n",
            "plan.yaml:4:9: duplicate task id 'a' (first on line 2)",
        ),
        (
            "tasks:\n  - id: a\n    depends_on: [b]\n",
            "plan.yaml:3:18: task 'a' depends on 'b', which is not a task",
        ),
        ("tasks:\n  - id: build\n  - id: b\n    depends_on: [biuld]\n", "did you mean 'build'?"),
        (
            "tasks:\n  - id: a\n    depends_on: [b]\n  - id: b\n    depends_on: [a]\n",
            "plan.yaml:2:9: dependency cycle: a → b → a",
        ),
        ("tasks:\n  - id: a\n    depends_on: [a]\n", "dependency cycle: a → a"),
        (
            "tasks:\n  - id: a\n  - id: b\n    depends_on: [a]\n    dependencies: [c]\n",
            "plan.yaml:5:5: task 'b' has depends_on ['a'] and dependencies ['c']",
        ),
        ("", "plan.yaml:1:1: the plan is empty"),
        ("tasks: []\n", "plan.yaml:1:1: the plan has no tasks"),
        ("meta: {name: x}\n", "the plan has no tasks"),
        (
            "tasks:\n  - id: a\n    timeout: -5\n",
            "plan.yaml:3:14: task 'a': timeout must be a number of seconds greater than 0, not -5",
        ),
        (
            "tasks:\n  - id: a\n    timeout: 10m\n",
            "timeout must be a number of seconds greater than 0, not '10m'",
        ),
        (
            "tasks:\n  - id: a\n    budget: {max_attempts: 0}\n",
            "max_attempts must be a number of at least 1, not 0",
        ),
        (
            "tasks:\n  - id: a\n    budget: {max_cost: -1}\n",
            "max_cost must be a number of at least 0, not -1",
        ),
        (
            "tasks:\n  - id: a\n    status: complete\n",
            "plan.yaml:3:13: task 'a': unknown status 'complete' (hint: did you mean 'completed'?)",
        ),
        (
            "tasks:\n  - id: a\n    timout: 5\n",
            "plan.yaml:3:5: task 'a': unknown key 'timout' (hint: did you mean 'timeout'?)",
        ),
        ("meta: {nmae: x}\ntasks:\n  - id: a\n", "unknown key 'nmae' (hint: did you mean 'name'?)"),
        (
            "tasks:\n  - id: a\n    run: make build\n",
            "run is a string, which needs a shell"
            " (hint: write an argv list like ['make', 'build'], or add `shell: true`)",
        ),
        (
            "tasks:\n  - id: a\n    run: [x]\n    call: 'm:f'\n",
            "task 'a' has both 'run' and 'call'",
        ),
        ("tasks:\n  - id: 1.5\n", "task id 1.5 is not text (hint: quote it: id: '1.5')"),
        ("tasks:\n  - id: a/b\n", "task id 'a/b' has characters ids cannot hold"),
        ("tasks:\n  - id: a\n    call: nocolon\n", "call 'nocolon' is not a function"),
        (
            "tasks:\n  - id: a\n    id: b\n",
            "plan.yaml:3:5: key 'id' appears twice in one mapping (first on line 2)",
        ),
        ("tasks:\n  - id: a\n  run: [x\n", "plan.yaml:3:"),
        ("tasks: [a, b]\n", "tasks: Input should be a valid dictionary"),
        ("- a\n", "a plan is a mapping with `tasks:`"),
        (
            "meta: {policy: {forbidden_commands: ['(bad']}}\ntasks:\n  - id: a\n",
            "'(bad' is not a valid regular expression",
        ),
        (
            "tasks:\n  - id: a\nsections:\n  - tasks: [{id: b}]\n",
            "a plan has `tasks:` or `sections:`, not both",
        ),
        (
            "tasks:\n  - id: a\n    run: !!python/object:os.system [x]\n",
            "plan.yaml:3:10: unsupported YAML tag tag:yaml.org,2002:python/object:os.system"
            " (hint: remove the tag",
        ),
        ("tasks:\n  - id: a\n    run: *nowhere\n", "plan.yaml:3:10: unknown alias *nowhere"),
        ("tasks:\n  - id: a\n---\ntasks: []\n", "a plan is one YAML document, found a second"),
        ("tasks:\n  - id: a\n    ? [x, y]\n    : 1\n", "a key must be a plain value"),
        ("base: &b [1]\ntasks:\n  - <<: *b\n    id: a\n", "`<<` merges mappings only"),
    ],
)
def test_each_plan_error_names_line_and_fix(text: str, expected: str) -> None:
    messages = errors_of(text)
    assert any(expected in message for message in messages), messages


def test_every_error_is_reported_at_once_in_line_order() -> None:
    messages = errors_of(
        "tasks:\n"
        "  - id: a\n    depends_on: [ghost]\n    status: complete\n"
        "  - id: a\n    timout: 1\n"
    )
    assert len(messages) == 4
    lines = [int(message.split(":")[1]) for message in messages]
    assert lines == sorted(lines) == [3, 4, 5, 6]


def test_several_cycles_are_each_reported() -> None:
    messages = errors_of(
        "tasks:\n"
        "  - {id: a, depends_on: [b]}\n  - {id: b, depends_on: [a]}\n"
        "  - {id: c, depends_on: [d]}\n  - {id: d, depends_on: [c]}\n"
    )
    assert sum("dependency cycle" in message for message in messages) == 2


def test_unreadable_files_are_plan_errors(tmp_path: Path) -> None:
    with pytest.raises(PlanInvalid, match="no such file"):
        read_plan(tmp_path / "missing.yaml")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"tasks:\n  - id: caf\xe9\n")
    with pytest.raises(PlanInvalid, match=r"latin.yaml:2:12: not UTF-8"):
        read_plan(latin)


def _plan_file(tmp_path: Path, body: str) -> str:
    path = tmp_path / "plan.yaml"
    path.write_text(body)
    return str(path)


def test_plan_check_json_names_root_blockers_transitively(tmp_path: Path) -> None:
    path = _plan_file(
        tmp_path,
        "tasks:\n"
        "  - {id: A, status: failed, run: ['true']}\n"
        "  - {id: B, status: pending, depends_on: [A], run: ['true']}\n"
        "  - {id: C, status: pending, depends_on: [B], run: ['true']}\n"
        "  - {id: D, status: completed}\n",
    )
    result = run_cli("plan", "check", path, "--json")
    assert result.exit_code == 1
    verdict = orjson.loads(result.stdout)
    assert verdict == {
        "plan": path,
        "status": "failed",
        "runnable": [],
        "waiting": [],
        "awaiting_human": [],
        "blocked": [{"id": "B", "blocked_by": ["A"]}, {"id": "C", "blocked_by": ["A"]}],
        "failed": ["A"],
        "errors": [],
        "agents": [],
        "run": {
            "fresh": False,
            "done": [{"id": "D", "status": "completed"}],
            "waves": [["A"], ["B"], ["C"]],
        },
        "warnings": [],
    }


@pytest.mark.parametrize(
    ("statuses", "status", "code"),
    [
        (["completed", "verified"], "completed", 0),
        (["completed", "pending"], "runnable", 0),
        (["in_progress", "pending"], "runnable", 0),
        (["failed", "pending"], "failed", 1),
        (["suspended", "pending"], "awaiting_human", 3),
        (["completed", "skipped"], "completed", 0),
    ],
)
def test_plan_check_status_and_exit_code(
    tmp_path: Path, statuses: list[str], status: str, code: int
) -> None:
    first, second = statuses
    path = _plan_file(
        tmp_path,
        f"tasks:\n  - {{id: a, status: {first}, run: ['true']}}\n"
        f"  - {{id: b, status: {second}, depends_on: [a], run: ['true']}}\n",
    )
    result = run_cli("plan", "check", path, "--json")
    assert (result.exit_code, orjson.loads(result.stdout)["status"]) == (code, status)


def test_in_progress_task_counts_as_still_able_to_run(tmp_path: Path) -> None:
    path = _plan_file(
        tmp_path,
        "tasks:\n  - {id: a, status: in_progress, run: ['true']}\n"
        "  - {id: b, status: pending, depends_on: [a], run: ['true']}\n",
    )
    verdict = orjson.loads(run_cli("plan", "check", path, "--json").stdout)
    assert verdict["runnable"] == ["a"] and verdict["waiting"] == ["b"]


def test_plan_check_invalid_plan_exit_2_with_errors(tmp_path: Path) -> None:
    path = _plan_file(tmp_path, "tasks:\n  - id: a\n    status: complete\n")
    result = run_cli("plan", "check", path, "--json")
    assert result.exit_code == 2
    verdict = orjson.loads(result.stdout)
    assert verdict["status"] == "invalid"
    assert verdict["errors"][0]["line"] == 3
    assert "did you mean 'completed'" in verdict["errors"][0]["hint"]
    plain = run_cli("plan", "check", path)
    assert plain.exit_code == 2
    assert f"{path}:3:13: task 'a': unknown status 'complete'" in plain.stderr
    assert "Traceback" not in plain.stderr


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('tasks:\n  - id: a\n    run: "echo hi\n  - id: b\n', "3:10"),
        ("tasks:\n  - {id: a, run: [echo, hi\n\n\n", "2:18"),
        ("tasks:\n  - id: a\n    run: 'echo hi\n  - id: b\n", "3:10"),
    ],
)
def test_a_quote_or_bracket_never_closed_is_named_where_it_opened(
    tmp_path: Path, text: str, where: str
) -> None:
    path = _plan_file(tmp_path, text)
    result = run_cli("plan", "check", path)
    assert result.exit_code == 2
    assert f"{path}:{where}: " in result.stderr  # not the end of the file, past every line
    assert "opened here is never closed" in result.stderr


def test_a_key_without_its_colon_at_the_end_is_not_called_unclosed(tmp_path: Path) -> None:
    path = _plan_file(tmp_path, "tasks:\n  - id: a\n    run: [x]\n  foo\n")
    result = run_cli("plan", "check", path)
    assert result.exit_code == 2 and "could not find expected ':'" in result.stderr
    assert "never closed" not in result.stderr


def test_plan_check_text_output_lists_blocked_tree(tmp_path: Path) -> None:
    path = _plan_file(
        tmp_path,
        "tasks:\n  - {id: A, status: failed, run: ['true']}\n"
        "  - {id: B, depends_on: [A], run: ['true']}\n",
    )
    result = run_cli("plan", "check", path)
    assert result.exit_code == 1
    assert "blocked: B (by A)" in result.stdout


def test_plan_schema_is_json_schema_of_the_native_format() -> None:
    result = run_cli("plan", "schema")
    assert result.exit_code == 0
    schema = orjson.loads(result.stdout)
    assert schema["title"] == "stoic plan"
    task = schema["$defs"]["TaskSpec"]
    assert task["additionalProperties"] is False
    assert {"id", "run", "call", "http", "depends_on", "timeout", "budget"} <= set(
        task["properties"]
    )
    assert "json" in schema["$defs"]["HttpRequest"]["properties"]


def _check_corpus(
    *options: str, env: dict[str, str] | None = None
) -> tuple[dict[str, int], dict[str, str]]:
    """Every corpus plan through `plan check`: outcomes, and each refused file's first error."""
    files = sorted(CORPUS.glob("*.yaml"))
    assert len(files) == 247
    outcomes: dict[str, int] = {}
    refused: dict[str, str] = {}
    for path in files:
        result = run_cli(*options, "plan", "check", str(path), "--json", env=env)
        assert result.exit_code in (0, 1, 2, 3), (path, result.stderr)
        assert "Traceback" not in result.stderr and "internal error" not in result.stderr
        verdict = orjson.loads(result.stdout)
        outcomes[verdict["status"]] = outcomes.get(verdict["status"], 0) + 1
        if result.exit_code == 2:
            assert verdict["errors"], path
            assert all(error["line"] >= 1 for error in verdict["errors"])
            text = run_cli(*options, "plan", "check", str(path), env=env).stderr
            assert f"{path}:{verdict['errors'][0]['line']}:" in text
            refused[path.name] = verdict["errors"][0]["message"]
    return outcomes, refused


def test_every_corpus_plan_loads_or_is_refused_clearly(tmp_path: Path) -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"the plan corpus is not here ({CORPUS}); set STOIC_CORPUS to its folder")
    # `plan check` refuses what a run would: the agent CLI must be on PATH (here a stand-in).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "claude").symlink_to("/bin/true")
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    outcomes, refused = _check_corpus("-w", str(tmp_path / "no-workspace"), env=env)
    # Two are not YAML, one says `complete`; eleven name agent roles stoic does not know
    # (design-judge, ux-designer, e2e-test-agent): an unknown role is never a silent default;
    # one has a pending task with no agent, which would have nothing to run.
    assert len(refused) == 15, refused
    assert sum("has nothing to run" in m for m in refused.values()) == 1
    roles = [
        m.split("unknown agent role '")[1].split("'")[0]
        for m in refused.values()
        if "unknown agent role" in m
    ]
    assert set(roles) <= {"design-judge", "e2e-test-agent", "ux-designer"}
    assert len(roles) == 11
    assert outcomes["completed"] > 100 and outcomes["failed"] > 0
    # Mapped to profiles in the workspace's stoic.toml, those roles are known.
    stoic.Workspace.init(tmp_path / "ws").close()
    (tmp_path / "ws" / "stoic.toml").write_text(
        '[agents.roles]\ndesign-judge = "read-only"\nux-designer = "design"\n'
        'e2e-test-agent = "verification"\n'
    )
    outcomes, refused = _check_corpus("-w", str(tmp_path / "ws"), env=env)
    assert len(refused) == 4, refused


SCALARS = [
    "yes",
    "No",
    "TRUE",
    "off",
    "On",
    "null",
    "Null",
    "~",
    "y",
    "n",
    "t1",
    "nope",
    "Yes please",
    "1",
    "-1",
    "+1",
    "0x1f",
    "0o17",
    "017",
    "1_000",
    "1.5",
    "-.5",
    ".inf",
    "-.Inf",
    ".nan",
    "1e3",
    "6.8523015e+5",
    "2026-01-01",
    "2001-12-14t21:59:43.10-05:00",
    "'quoted yes'",
    '"1"',
    "<<x",
    "[1, yes]",
    "{k: off}",
    "!!str 12",
    "!!int '7'",
    "",
]

MERGES = [
    "d: &d {a: 1, b: 2}\nv:\n  <<: *d\n  b: 3\n",
    "d: &d {a: 1}\ne: &e {c: 2}\nv:\n  <<: [*d, *e]\n  c: 4\n",
    "v: &v [1, {k: x}]\nw: *v\n",
    "v:\n  b: 0\n  <<: {a: 1, b: 2}\n",
    "d: &d {k: first}\ne: &e {k: second, j: 1}\nv: {<<: [*d, *e]}\n",
    "t: &t {run: [make], timeout: 5}\n"
    "tasks:\n  - {<<: *t, id: a}\n  - {<<: *t, id: b, timeout: 9}\n",
]


@pytest.mark.parametrize("text", MERGES)
def test_located_yaml_merges_and_aliases_as_pyyaml_does(text: str) -> None:
    import yaml

    from stoic.plan.yaml_source import load_located

    assert load_located(text)[0] == yaml.load(text, Loader=yaml.CSafeLoader)


@pytest.mark.parametrize("scalar", SCALARS)
def test_located_yaml_reads_values_as_pyyaml_does(scalar: str) -> None:
    import datetime

    import yaml

    from stoic.plan.yaml_source import load_located

    text = f"v: {scalar}\n"
    expected = yaml.load(text, Loader=yaml.CSafeLoader)
    if isinstance(expected["v"], datetime.date):
        expected["v"] = scalar  # timestamps are kept as the text that was written
    assert load_located(text)[0] == expected


_KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-", min_size=1, max_size=8)
_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False),
    st.text(max_size=20),
)
_DOCUMENTS = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_KEYS, inner, max_size=4)),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_KEYS, _DOCUMENTS, max_size=5), st.booleans())
def test_located_yaml_reads_any_document_as_pyyaml_does(data: dict[str, Any], flow: bool) -> None:
    import yaml

    from stoic.plan.yaml_source import load_located

    text = yaml.safe_dump(data, default_flow_style=flow, allow_unicode=True)
    assert load_located(text)[0] == yaml.load(text, Loader=yaml.CSafeLoader)
