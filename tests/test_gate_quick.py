"""The gate's quick path and the settings it reads (DESIGN §15): an allow or a deny by the rules
alone is answered without opening the workspace, yet on record, chained, audited, and by the
very rules the whole gate applies; the `[gate]` table checked without pydantic accepts exactly
the tables the settings model accepts; a plan's rules reach the hook only to narrow."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import stoic
from stoic.cli.gate_hook import answer_hook
from stoic.core.gate_table import DEFAULT_GATE_RULES, GateTable, gate_table
from stoic.core.gate_wire import NARROWING_VARIABLE, narrowing_rules
from stoic.services import queue
from stoic.services.gate_call import read_hook_call
from stoic.services.gate_quick import quick_answer
from stoic.store.gate_settings import GateSettings
from tests.conftest import STOIC_BIN
from tests.test_gate_hook import DOCUMENTED


def _call(repo: Path, tool: str = "Bash", **tool_input: Any) -> Any:
    payload = DOCUMENTED | {"cwd": str(repo), "tool_name": tool, "tool_input": tool_input}
    call = read_hook_call(orjson.dumps(payload))
    assert not isinstance(call, str)
    return call


def _status_bytes(ws_path: Path) -> bytes:
    return (ws_path / "manifests" / "workspace_status.json").read_bytes()


def test_an_allow_is_answered_without_opening_the_workspace_and_stays_on_record(
    ws_path: Path, repo: Path
) -> None:
    before = _status_bytes(ws_path)
    answer = quick_answer(ws_path, _call(repo, command="git status"), agent="agent:claude-code")
    assert answer is not None and answer.answer.value == "allow"
    assert _status_bytes(ws_path) == before  # no projection was touched: nothing was opened
    with stoic.Workspace.open(ws_path) as workspace:  # the next open catches up
        (record,) = list(workspace.records(decision_type="gate"))
        assert record.seq == answer.seq and record.decision_outcome == "allowed"
        assert record.decision_inputs["agent"] == "agent:claude-code"
        assert workspace.audit().ok
    assert _status_bytes(ws_path) != before


def test_a_deny_and_a_refusal_take_the_quick_path_a_proposal_does_not(
    ws_path: Path, repo: Path
) -> None:
    denied = quick_answer(ws_path, _call(repo, "Read", file_path=".env"), agent="agent:a")
    assert denied is not None and denied.answer.value == "deny"
    refused = quick_answer(
        ws_path, _call(repo, "Write", file_path=str(ws_path / "stoic.toml")), agent="agent:a"
    )
    assert refused is not None and "the workspace is stoic's record" in refused.reason
    assert quick_answer(ws_path, _call(repo, command="git push"), agent="agent:a") is None
    with stoic.Workspace.open(ws_path) as workspace:
        assert [r.decision_outcome for r in workspace.records(decision_type="gate")] == [
            "denied",
            "denied",
        ]
        assert queue.list_proposals(workspace) == []


def test_settings_it_cannot_check_go_to_the_whole_gate_which_denies_naming_them(
    ws_path: Path, repo: Path
) -> None:
    settings_file = ws_path / "stoic.toml"
    settings_file.write_text(
        settings_file.read_text() + '\n[[gate.rules]]\nverdict = "allow"\ncommand = "("\n'
    )
    call = _call(repo, command="git status")
    assert quick_answer(ws_path, call, agent="agent:a") is None
    decision, reason = answer_hook(ws_path, orjson.dumps(DOCUMENTED | {"cwd": str(repo)}))
    assert decision == "deny" and "stoic.toml" in reason and "not a regex" in reason


def test_only_the_gate_table_is_the_quick_paths_input(ws_path: Path, repo: Path) -> None:
    """A typo elsewhere in stoic.toml stops every other command; the gate's allows, which
    depend on `[gate]` alone, still answer — and a propose, which opens the workspace, is
    denied naming the typo."""
    settings_file = ws_path / "stoic.toml"
    settings_file.write_text(settings_file.read_text() + "\n[no_such_table]\nx = 1\n")
    allowed = answer_hook(
        ws_path,
        orjson.dumps(DOCUMENTED | {"cwd": str(repo), "tool_input": {"command": "git status"}}),
    )
    assert allowed[0] == "allow"
    proposed = answer_hook(
        ws_path,
        orjson.dumps(DOCUMENTED | {"cwd": str(repo), "tool_input": {"command": "git push"}}),
        wait_seconds=0,
    )
    assert proposed[0] == "deny" and "no_such_table" in proposed[1]


def test_the_hooks_process_imports_neither_pydantic_nor_the_workspace(
    ws_path: Path, repo: Path
) -> None:
    payload = orjson.dumps(DOCUMENTED | {"cwd": str(repo), "tool_input": {"command": "git status"}})
    script = (
        "import sys\n"
        "from stoic.cli.entry import main\n"
        f"sys.argv = ['stoic', '-w', {str(ws_path)!r}, 'gate', 'claude-code']\n"
        "code = main()\n"
        "heavy = [m for m in ('pydantic', 'stoic.store.workspace', 'stoic.services.queue',"
        " 'typer') if m in sys.modules]\n"
        "print(heavy, file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    python = str(Path(STOIC_BIN).with_name("python"))
    done = subprocess.run(
        [python, "-c", script], input=payload, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["hookSpecificOutput"]["permissionDecision"] == "allow"
    assert done.stderr.decode().strip() == "[]"


# -- the [gate] table: the checked-by-hand reader and the settings model agree --------------

_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 600),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["allow", "propose", "deny", "inside", "outside", "Bash", "(", "*", "x"]),
    st.lists(st.sampled_from(["Bash", "Read", "", "*.pem", 3]), max_size=3),
)
_RULE_KEYS = st.sampled_from(["verdict", "tool", "command", "paths", "where", "other"])
_RULES = st.lists(st.one_of(st.dictionaries(_RULE_KEYS, _VALUES, max_size=5), _VALUES), max_size=3)
_TABLES = st.dictionaries(
    st.sampled_from(["default", "wait_seconds", "rules", "other"]),
    st.one_of(_VALUES, _RULES),
    max_size=3,
)


def _by_model(table: dict[str, Any]) -> GateTable | None:
    try:
        return GateSettings.model_validate(table).table()
    except ValidationError:
        return None


@given(_TABLES)
@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
def test_the_quick_paths_reader_accepts_exactly_what_the_settings_model_does(
    table: dict[str, Any],
) -> None:
    by_hand = gate_table(table)
    by_model = _by_model(table)
    if isinstance(by_hand, str):
        assert by_model is None, (table, by_hand)
    else:
        assert by_model == by_hand, table


def test_the_defaults_are_one_list_read_alike_by_both() -> None:
    by_hand = gate_table({})
    assert not isinstance(by_hand, str)
    assert by_hand == GateSettings().table()
    assert len(by_hand.rules) == len(DEFAULT_GATE_RULES)


# -- a plan's rules, handed to the hook in its environment, only narrow ----------------------


def test_a_plans_rules_in_the_environment_narrow_the_workspaces(
    ws_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = orjson.dumps(DOCUMENTED | {"cwd": str(repo), "tool_input": {"command": "ls"}})
    assert answer_hook(ws_path, payload)[0] == "allow"
    rules = [{"verdict": "deny", "tool": "Bash", "command": r"^ls\b"}]
    monkeypatch.setenv(NARROWING_VARIABLE, json.dumps(rules))
    decision, reason = answer_hook(ws_path, payload)
    assert decision == "deny" and "the plan's meta.gate[0]" in reason
    loosening = [{"verdict": "allow", "tool": "*"}]
    monkeypatch.setenv(NARROWING_VARIABLE, json.dumps(loosening))
    push = orjson.dumps(DOCUMENTED | {"cwd": str(repo), "tool_input": {"command": "git push"}})
    decision, reason = answer_hook(ws_path, push, wait_seconds=0)
    assert decision == "deny" and "waits for a person" in reason


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("not json", "is not JSON"),
        ('{"verdict": "deny"}', "not a list of rules"),
        ('[{"verdict": "maybe"}]', "meta.gate[0]: `verdict` is allow, propose or deny"),
        ('[{"verdict": "deny", "command": "("}]', "is not a regex"),
    ],
)
def test_plan_rules_it_cannot_read_deny_on_record(
    ws_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch, text: str, said: str
) -> None:
    assert isinstance(narrowing_rules(text), str)
    monkeypatch.setenv(NARROWING_VARIABLE, text)
    payload = orjson.dumps(DOCUMENTED | {"cwd": str(repo), "tool_input": {"command": "ls"}})
    decision, reason = answer_hook(ws_path, payload)
    assert decision == "deny" and said in reason
    with stoic.Workspace.open(ws_path) as workspace:
        (record,) = list(workspace.records(decision_type="gate"))
        assert record.decision_outcome == "denied" and said in record.decision_reason
