"""The agent executor (DESIGN §11): roles, profiles, inference, the CLI template, validation.

A fake agent CLI (a shell script) records its argv and acts by the scenario in its prompt.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stoic.core.agents import (
    BUILTIN_PROFILES,
    BUILTIN_ROLES,
    ROLE_PHRASES,
    choose_role,
    infer_role,
)
from tests.conftest import PROJECT_ROOT, run_cli
from tests.test_recovery_runs import audit_clean, records_of, run_id_of, story

FAKE_AGENT = r"""#!/bin/sh
printf '%s\n' "$@" > "$FAKE_AGENT_DIR/argv.$STOIC_TASK_ID.$STOIC_ATTEMPT"
echo "$STOIC_AGENT_ROLE $STOIC_AGENT_PROFILE $STOIC_AGENT_APPROVAL" \
  > "$FAKE_AGENT_DIR/env.$STOIC_TASK_ID"
case "$2" in
  *'[rate-limited-then-ok]'*)
    if [ ! -f "$FAKE_AGENT_DIR/limited" ]; then
      touch "$FAKE_AGENT_DIR/limited"
      echo "Error: API rate limit exceeded. Please retry after 1s." >&2; exit 1
    fi ;;
  *'[rate-limited]'*) echo "429 Too Many Requests" >&2; exit 1 ;;
  *'[crash]'*) echo "segmentation fault" >&2; exit 139 ;;
  *'[ask]'*)
    if [ -z "$STOIC_GUIDANCE" ]; then
      echo '{"escalate": {"mode": "ambiguity", "question": "Which region should it use?"}}' \
        > "$STOIC_RESULT"
      exit 0
    fi ;;
esac
echo "done: $2"
"""

AGENT_TOML = """
[recovery]
timeout_retry_delay_seconds = 0.1
[policy]
# the fake agent's folder is not passed on by default
env_passthrough = ["PATH", "HOME", "FAKE_AGENT_DIR"]
[agents]
agent_cli = ["fake-agent", "--prompt", "{prompt}", "--tools", "{tools}",
             "--approval", "{approval}", "--role", "{role}"]
"""


@pytest.fixture
def agent_env(tmp_path: Path, ws_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "fake-agent"
    script.write_text(FAKE_AGENT)
    script.chmod(0o755)
    (ws_path / "stoic.toml").write_text(AGENT_TOML)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_AGENT_DIR": str(tmp_path)}


def run_agents(ws: Path, folder: Path, plan: str, env: dict[str, str]) -> tuple[int, str, str]:
    (folder / "plan.yaml").write_text(plan)
    result = run_cli("-w", str(ws), "run", str(folder / "plan.yaml"), env=env)
    return result.exit_code, result.stdout, result.stderr


# -- inference -----------------------------------------------------------------------------

INFERENCE = [
    ("Add content moderation check functionality", "coder"),
    ("Implement review UI for moderators", "coder"),
    ("Validate user input in the form", "coder"),
    ("Improve API performance", "coder"),
    ("Fix date format", "coder"),
    ("Implement design system tokens", "coder"),
    ("Run verification suite", "code-reviewer"),
    ("Code review the authentication module", "code-reviewer"),
    ("Generate test plan", "qa-auditor"),
    ("Verify spec compliance", "spec-verifier"),
    ("Accessibility review of the settings page", "ux-reviewer"),
    ("Build login form component", "frontend-coder"),
]


@pytest.mark.parametrize(("text", "role"), INFERENCE)
def test_role_inference_table(text: str, role: str) -> None:
    assert infer_role(text)[0] == role


def test_phrases_match_on_word_boundaries_only() -> None:
    assert infer_role("Decode reviewer notes")[0] == "coder"  # "code review" inside words
    assert infer_role("Write the latest plan")[0] == "coder"  # not "test plan"
    assert infer_role("code-review the parser")[0] == "code-reviewer"


@given(
    st.lists(
        st.sampled_from(["check", "review", "form", "design", "test", "verify", "spec", "plan"])
        | st.sampled_from(["the", "module", "parser", "quickly", "API", "page"]),
        max_size=6,
    )
)
def test_single_words_never_decide_a_role(words: list[str]) -> None:
    text = " ".join(words)
    role, phrase = infer_role(text)
    if phrase is None:
        assert role == "coder"
    else:
        assert " " in phrase and phrase in text.lower()


def test_unknown_roles_and_profiles_are_errors() -> None:
    with pytest.raises(ValueError, match="unknown agent role 'wizard'"):
        choose_role("wizard", "", BUILTIN_ROLES, BUILTIN_PROFILES)
    with pytest.raises(ValueError, match="unknown profile 'ghost'"):
        choose_role("coder", "", {"coder": "ghost"}, BUILTIN_PROFILES)
    auto = choose_role("auto", "Generate test plan", BUILTIN_ROLES, BUILTIN_PROFILES)
    assert (auto.role, auto.profile.name, auto.inferred) == ("qa-auditor", "verification", True)


# -- running agents ------------------------------------------------------------------------


def test_an_agent_task_runs_the_cli_from_the_template(
    tmp_path: Path, ws_path: Path, agent_env: dict[str, str]
) -> None:
    plan = (
        "tasks:\n  - id: review\n    agent: code-reviewer\n"
        "    prompt: Review the build changes\n"
        "  - id: login\n    agent: auto\n    description: Build login form component\n"
    )
    code, _, err = run_agents(ws_path, tmp_path, plan, agent_env)
    assert code == 0, err
    argv = (tmp_path / "argv.review.1").read_text().splitlines()
    assert argv == [
        "--prompt",
        "Review the build changes",
        "--tools",
        "Read,Grep,Glob",
        "--approval",
        "plan",
        "--role",
        "code-reviewer",
    ]
    assert (tmp_path / "env.login").read_text().split() == [
        "frontend-coder",
        "write",
        "accept-edits",
    ]
    (started,) = records_of(ws_path, "review", "execution", "started")
    assert started["decision_inputs"]["executor"] == "agent"
    audit_clean(ws_path)


def test_rate_limit_text_with_retry_after_is_retried_once(
    tmp_path: Path, ws_path: Path, agent_env: dict[str, str]
) -> None:
    plan = "tasks:\n  - id: a\n    agent: coder\n    prompt: 'Fix it [rate-limited-then-ok]'\n"
    plan += "    idempotent: true\n"  # else unknown side effects make it R2 (DESIGN §7)
    code, _, _ = run_agents(ws_path, tmp_path, plan, agent_env)
    assert code == 0
    (failed,) = records_of(ws_path, "a", "execution", "failed")
    assert failed["decision_inputs"]["failure_kind"] == "rate_limited"
    assert failed["decision_inputs"]["retry_after_s"] == 1.0
    assert story(ws_path, "a").count("recovery_evaluation/recovery_applied") == 1


def test_rate_limit_text_without_retry_after_is_suggested(
    tmp_path: Path, ws_path: Path, agent_env: dict[str, str]
) -> None:
    plan = "tasks:\n  - id: a\n    agent: coder\n    prompt: 'Fix it [rate-limited]'\n"
    code, out, _ = run_agents(ws_path, tmp_path, plan, agent_env)
    assert code == 3
    assert "waiting for a person (a suggested recovery)" in out
    (failed,) = records_of(ws_path, "a", "execution", "failed")
    assert failed["decision_inputs"]["failure_kind"] == "rate_limited"
    assert "its output says rate_limited" in str(failed["decision_reason"])
    assert records_of(ws_path, "a", "recovery_evaluation", "recovery_suggested")


def test_unrecognised_agent_output_stays_an_error(
    tmp_path: Path, ws_path: Path, agent_env: dict[str, str]
) -> None:
    plan = "tasks:\n  - id: a\n    agent: coder\n    prompt: 'Fix it [crash]'\n"
    assert run_agents(ws_path, tmp_path, plan, agent_env)[0] == 1
    (failed,) = records_of(ws_path, "a", "execution", "failed")
    assert failed["decision_inputs"]["failure_kind"] == "error"


# -- refused before anything runs ----------------------------------------------------------


def test_an_interactive_profile_is_refused_in_a_headless_run(
    tmp_path: Path, ws_path: Path, agent_env: dict[str, str]
) -> None:
    (ws_path / "stoic.toml").write_text(
        AGENT_TOML
        + '[agents.profiles.pair]\ntools = ["Read"]\napproval = "interactive"\n'
        + '[agents.roles]\npair-programmer = "pair"\n'
    )
    plan = "tasks:\n  - id: a\n    run: ['touch', 'ran']\n  - id: b\n    agent: pair-programmer\n"
    plan += "    prompt: Pair on it\n"
    code, _, err = run_agents(ws_path, tmp_path, plan, agent_env)
    assert code == 2
    assert "plan.yaml:4:9: task 'b': role 'pair-programmer' uses profile 'pair'" in err
    assert "would wait forever for a prompt" in err
    assert not (tmp_path / "ran").exists() and not list(tmp_path.glob("argv.*"))
    check = run_cli("-w", str(ws_path), "plan", "check", str(tmp_path / "plan.yaml"))
    assert check.exit_code == 2 and "interactive" in check.stderr


def test_an_unknown_role_is_an_error_not_a_default(
    tmp_path: Path, ws_path: Path, agent_env: dict[str, str]
) -> None:
    plan = "tasks:\n  - id: a\n    agent: wizard\n    prompt: Do magic\n"
    code, _, err = run_agents(ws_path, tmp_path, plan, agent_env)
    assert code == 2 and "unknown agent role 'wizard' (known: code-reviewer, coder" in err


def test_an_agent_cli_not_on_path_is_an_error(tmp_path: Path, ws_path: Path) -> None:
    (ws_path / "stoic.toml").write_text('[agents]\nagent_cli = ["no-such-agent-cli", "{prompt}"]\n')
    plan = "tasks:\n  - id: a\n    agent: coder\n    prompt: Fix it\n"
    code, _, err = run_agents(ws_path, tmp_path, plan, {})
    assert code == 2 and "the agent CLI 'no-such-agent-cli' (for agent tasks) is not on PATH" in err


def test_plan_check_lists_agent_tasks(
    tmp_path: Path, ws_path: Path, agent_env: dict[str, str]
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "tasks:\n  - {id: a, agent: auto, description: Generate test plan}\n"
        "  - {id: b, agent: planner, prompt: Plan it}\n  - {id: c, run: ['true']}\n"
    )
    result = run_cli("-w", str(ws_path), "plan", "check", str(plan), "--json", env=agent_env)
    assert result.exit_code == 0
    assert orjson.loads(result.stdout)["agents"] == [
        {"id": "a", "role": "qa-auditor", "profile": "verification", "inferred": True},
        {"id": "b", "role": "planner", "profile": "design", "inferred": False},
    ]


def test_an_agent_verifier_without_its_cli_is_absent(tmp_path: Path, ws_path: Path) -> None:
    (ws_path / "stoic.toml").write_text('[agents]\nagent_cli = ["no-such-agent-cli", "{prompt}"]\n')
    plan = (
        "tasks:\n  - id: a\n    run: ['true']\n"
        "    verify:\n      - {id: second-opinion, agent: code-reviewer}\n"
    )
    code, _, err = run_agents(ws_path, tmp_path, plan, {})
    assert code == 0 and "WARNING" not in err
    assert records_of(ws_path, "a", "verification", "absent")


def test_an_agent_verifier_reports(
    tmp_path: Path, ws_path: Path, agent_env: dict[str, str]
) -> None:
    report = orjson.dumps({"verification_report": {"findings": []}}).decode()
    script = tmp_path / "bin" / "fake-agent"
    script.write_text(f"#!/bin/sh\necho '{report}' > \"$STOIC_REPORT\"\n")
    plan = (
        "tasks:\n  - id: a\n    run: ['true']\n"
        "    verify:\n      - {id: second-opinion, agent: code-reviewer}\n"
    )
    assert run_agents(ws_path, tmp_path, plan, agent_env)[0] == 0
    (passed,) = records_of(ws_path, "a", "verification", "passed")
    assert passed["details"]["status"] == "PASS"


def test_the_readme_role_table_is_the_inference_table() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    for role, phrases in ROLE_PHRASES:
        (row,) = [line for line in readme.splitlines() if line.startswith(f"| `{role}` |")]
        assert f"| {BUILTIN_ROLES[role]} |" in row
        assert ", ".join(f'"{phrase}"' for phrase in phrases) in row
    for name, profile in BUILTIN_PROFILES.items():
        (row,) = [line for line in readme.splitlines() if line.startswith(f"| `{name}` |")]
        assert f"| {', '.join(profile.tools)} | {profile.approval.value} |" in row


def test_role_approval_rules_apply_to_inferred_roles(
    tmp_path: Path, ws_path: Path, agent_env: dict[str, str]
) -> None:
    (ws_path / "stoic.toml").write_text(
        AGENT_TOML.replace("[policy]\n", '[policy]\nrequire_approval = ["role:qa-auditor"]\n')
    )
    plan = "tasks:\n  - id: a\n    agent: auto\n    description: Generate test plan\n"
    assert run_agents(ws_path, tmp_path, plan, agent_env)[0] == 3
    assert not list(tmp_path.glob("argv.*"))  # it waits for a person before it runs
    (pending,) = [p.stem for p in (ws_path / "queue" / "pending").glob("PROP-*.json")]
    assert run_cli("-w", str(ws_path), "approve", pending).exit_code == 0
    run_id = next((ws_path / "runs").iterdir()).name
    assert run_cli("-w", str(ws_path), "continue", run_id, env=agent_env).exit_code == 0
    assert (tmp_path / "env.a").read_text().split()[0] == "qa-auditor"


def test_an_agent_verifier_whose_agent_file_is_missing_is_absent(
    tmp_path: Path, ws_path: Path, agent_env: dict[str, str]
) -> None:
    plan = (
        "tasks:\n  - id: a\n    run: ['true']\n    verify:\n"
        "      - {id: cross-check, agent: spec-verifier, agent_file: agents/cross-check.md}\n"
    )
    code, _, err = run_agents(ws_path, tmp_path, plan, agent_env)
    assert code == 0 and "WARNING" not in err
    assert records_of(ws_path, "a", "verification", "absent")
    assert not list(tmp_path.glob("argv.*"))  # the agent CLI was never called


def test_an_unknown_placeholder_in_the_template_is_a_config_error(ws_path: Path) -> None:
    (ws_path / "stoic.toml").write_text('[agents]\nagent_cli = ["claude", "{promt}"]\n')
    result = run_cli("-w", str(ws_path), "status")
    assert result.exit_code == 2
    assert "stoic.toml:2: agents.agent_cli: unknown placeholder {promt}" in (result.stderr)


def test_an_agent_gets_a_persons_answer_and_its_checks_result_in_its_prompt(
    tmp_path: Path, ws_path: Path, agent_env: dict[str, str]
) -> None:
    (tmp_path / "check.sh").write_text(
        "n=$(cat rounds 2>/dev/null || echo 0); echo $((n + 1)) > rounds\n"
        'if [ "$n" = 0 ]; then echo \'{"failures": 2}\' > "$STOIC_RESULT"; fi\n'
    )
    plan = (
        "tasks:\n  - id: fix\n    agent: coder\n    prompt: 'Fix the lint [ask]'\n"
        "    idempotent: true\n    iterate: {check: [sh, check.sh], max_iterations: 3}\n"
    )
    code, out, err = run_agents(ws_path, tmp_path, plan, agent_env)
    assert code == 3, out + err  # waiting for a person: the agent asked
    answered = run_cli(
        "-w",
        str(ws_path),
        "escalations",
        "answer",
        "ESC-001",
        "--decision",
        "routed",
        "--note",
        "use eu-west-1",
    )
    assert answered.exit_code == 0, answered.stderr
    run_id = run_id_of(ws_path)
    resumed = run_cli("-w", str(ws_path), "continue", run_id, env=agent_env)
    assert resumed.exit_code == 0, resumed.stdout + resumed.stderr
    prompts = {path.name: path.read_text().splitlines()[1:] for path in tmp_path.glob("argv.fix.*")}
    # Attempt 2 ran twice (the check failed once); its file holds the second round's argv.
    second = "\n".join(prompts["argv.fix.2"])
    assert "Guidance from a person: use eu-west-1" in second
    assert "The check still reports failures; its result is in" in second
    assert (tmp_path / "rounds").read_text().strip() == "2"
    audit_clean(ws_path)
