"""Secrets a plan names: given to their task only, masked wherever stoic keeps or shows them."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stoic.core.policy import CUT_SECRET_BYTES, StreamMask, mask_decision, mask_secrets
from stoic.core.records import Decision
from tests.conftest import log_path, run_cli

SECRET = "s3cr3t-Deploy-Value-42"
MARK = "[DEPLOY_TOKEN masked]"

DEPLOY = r"""
meta: {name: secrets}
tasks:
  - id: deploy
    secrets: [DEPLOY_TOKEN]
    shell: true
    doc: summary.md
    run: |
      T="$DEPLOY_TOKEN"
      echo "token is $T"
      printf '%s' "$T" | head -c 9; sleep 0.4; printf '%s\n' "$T" | tail -c +10
      printf '{"outputs": {"token": "%s"}, "note": "%s"}' "$T" "$T" > "$STOIC_RESULT"
      printf '## Summary\nDeployed with %s\n' "$T" > summary.md
    verify:
      - id: look
        run: >-
          printf '{"verification_report": {"findings": [{"severity": "warning",
          "description": "saw %s env=%s"}]}}' "$(cat TOKEN_FILE)" "${DEPLOY_TOKEN:-unset}"
          > "$STOIC_REPORT"; echo "verifier saw $(cat TOKEN_FILE)"
  - id: other
    depends_on: [deploy]
    shell: true
    run: 'echo "other sees ${DEPLOY_TOKEN:-nothing}"; cat "$STOIC_INPUTS"'
  - id: broken
    depends_on: [other]
    secrets: [DEPLOY_TOKEN]
    shell: true
    run: >-
      printf '{"failure": {"kind": "error", "message": "rejected %s"}}' "$DEPLOY_TOKEN"
      > "$STOIC_RESULT"
"""


def everything_in(folder: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_a_secret_is_masked_in_every_place_and_reaches_only_its_task(
    tmp_path: Path, ws_path: Path
) -> None:
    token = tmp_path / "token.txt"
    token.write_text(SECRET + "\n")
    notices = tmp_path / "notices.ndjson"
    (ws_path / "stoic.toml").write_text(
        f'[[notifiers]]\nkind = "command"\ncommand = ["sh", "-c", "cat >> {notices}"]\n\n'
        f'[secrets]\nDEPLOY_TOKEN = {{file = "{token}"}}\n'
    )
    plan_dir = tmp_path / "plan"
    plan_dir.mkdir()
    (plan_dir / "plan.yaml").write_text(DEPLOY.replace("TOKEN_FILE", str(token)))
    result = run_cli("-w", str(ws_path), "run", str(plan_dir / "plan.yaml"))
    assert result.exit_code != 0, result.stdout + result.stderr  # `broken` failed, as it says
    assert SECRET not in result.stdout + result.stderr
    (run_id,) = [path.name for path in (ws_path / "runs").iterdir()]
    timeline = run_cli("-w", str(ws_path), "timeline", run_id, "--json")
    log = run_cli("-w", str(ws_path), "log", "--json")
    assert timeline.exit_code == 0 and log.exit_code == 0
    for shown in (timeline.stdout, log.stdout):
        assert SECRET not in shown and MARK in shown

    files = everything_in(ws_path)
    leaked = [str(path) for path, data in files.items() if SECRET.encode() in data]
    # Only what tasks wrote themselves (result files, reports) holds it: never stoic's files.
    assert [path for path in leaked if f"/runs/{run_id}/results/" not in path] == []
    tasks = ws_path / "runs" / run_id / "tasks"
    deploy_log = (tasks / "deploy" / "attempt-1.log").read_text()
    assert deploy_log == f"token is {MARK}\n{MARK}\n"  # the split one too
    assert "verifier saw " + MARK in (tasks / "deploy" / "attempt-1.verify-look.log").read_text()
    other_log = (tasks / "other" / "attempt-1.log").read_text()
    assert other_log.startswith("other sees nothing\n")  # not given to another task
    assert orjson.loads(other_log.splitlines()[1]) == {"deploy": {"token": MARK}}

    records = [orjson.loads(line) for line in log_path(ws_path).read_bytes().splitlines()]
    ended = next(
        r
        for r in records
        if r["decision_type"] == "execution"
        and r["task_id"] == "deploy"
        and r["decision_outcome"] == "succeeded"
    )
    assert ended["details"]["outputs"] == {"token": MARK}
    assert ended["details"]["result"] == {"note": MARK}
    assert ended["details"]["summary"] == f"Deployed with {MARK}"
    (verified,) = [r for r in records if r["decision_type"] == "verification"]
    description = verified["details"]["findings"][0]["description"]
    assert description == f"saw {MARK} env=unset"  # a verifier is not given the secret
    failed = [
        r for r in records if r.get("task_id") == "broken" and r["decision_outcome"] == "failed"
    ]
    assert failed and all(MARK in r["decision_reason"] for r in failed)

    sent = notices.read_text()
    assert SECRET not in sent and MARK in sent  # the summary in the run's end notice


def write_plan(folder: Path, body: str) -> Path:
    plan = folder / "plan.yaml"
    plan.write_text(body)
    return plan


ONE = "tasks:\n  - {id: t, run: ['sh', '-c', 'echo \"$API_KEY_X\"'], secrets: [API_KEY_X]}\n"


def test_a_secret_from_the_environment_reaches_its_task(tmp_path: Path, ws_path: Path) -> None:
    plan = write_plan(tmp_path, ONE)
    result = run_cli("-w", str(ws_path), "run", str(plan), env={"API_KEY_X": "env-value-9"})
    assert result.exit_code == 0, result.stderr
    (log,) = (ws_path / "runs").glob("*/tasks/t/attempt-1.log")
    assert log.read_text() == "[API_KEY_X masked]\n"


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("", "secret API_KEY_X is named but found nowhere"),
        ('[secrets]\nAPI_KEY_X = {file = "missing.txt"}\n', "cannot be read from"),
        ('[secrets]\nAPI_KEY_X = {file = "empty.txt"}\n', "secret API_KEY_X is empty in"),
        ('[secrets]\nAPI_KEY_X = {file = "short.txt"}\n', "shorter than 4 characters"),
        # a link planted where a workspace secret file is named is never read through
        ('[secrets]\nAPI_KEY_X = {file = "linked.txt"}\n', "is a link"),
        ('[secrets]\nAPI_KEY_X = {file = "linked-dir/token"}\n', "is a link"),
        ('[secrets]\nAPI_KEY_X = {file = "../outside.txt"}\n', "is not inside"),
    ],
)
def test_a_secret_that_cannot_be_found_refuses_the_run_and_the_plan_check(
    tmp_path: Path, ws_path: Path, setup: str, expected: str
) -> None:
    (ws_path / "empty.txt").write_text("\n")
    (ws_path / "short.txt").write_text("abc\n")
    private = tmp_path / "private"
    private.mkdir()
    (private / "token").write_text("only-stoic-may-read-this\n")
    (ws_path / "linked.txt").symlink_to(private / "token")
    (ws_path / "linked-dir").symlink_to(private)
    (ws_path.parent / "outside.txt").write_text("outside-value-9\n")
    (ws_path / "stoic.toml").write_text(setup)
    plan = write_plan(tmp_path, ONE)
    os.environ.pop("API_KEY_X", None)
    result = run_cli("-w", str(ws_path), "run", str(plan))
    assert result.exit_code == 2 and expected in result.stderr, result.stderr
    assert "only-stoic-may-read-this" not in result.stdout + result.stderr
    assert not (ws_path / "runs").exists() or not list((ws_path / "runs").iterdir())
    check = run_cli("-w", str(ws_path), "plan", "check", str(plan))
    assert check.exit_code != 0 and expected in check.stdout + check.stderr


def test_meta_secrets_reach_every_task(tmp_path: Path, ws_path: Path) -> None:
    plan = write_plan(
        tmp_path,
        "meta: {secrets: [API_KEY_X]}\ntasks:\n"
        "  - {id: a, run: ['sh', '-c', 'echo \"$API_KEY_X\"']}\n"
        "  - {id: b, run: ['sh', '-c', 'echo \"$API_KEY_X\"']}\n",
    )
    result = run_cli("-w", str(ws_path), "run", str(plan), env={"API_KEY_X": "env-value-9"})
    assert result.exit_code == 0, result.stderr
    logs = sorted((ws_path / "runs").glob("*/tasks/*/attempt-1.log"))
    assert [log.read_text() for log in logs] == ["[API_KEY_X masked]\n"] * 2


def test_the_stream_mask_holds_back_what_could_begin_a_secret() -> None:
    mask = StreamMask({"A": "abcdef", "B": "xyz1"})
    text = b"..abcdef..abcde..xyz1xyz1.abc"
    for size in range(1, len(text) + 1):
        stream = StreamMask({"A": "abcdef", "B": "xyz1"})
        out = b"".join(stream.feed(text[i : i + size]) for i in range(0, len(text), size))
        assert out + stream.flush() == b"..[A masked]..abcde..[B masked][B masked].abc"
    assert mask.feed(b"ab") == b""  # it may begin a secret: held back
    assert mask.flush() == b"ab"


@given(
    before=st.binary(max_size=40),
    cut=st.integers(min_value=CUT_SECRET_BYTES, max_value=len(SECRET) - 1),
    size=st.integers(min_value=1, max_value=16),
)
def test_an_output_cut_off_inside_a_secret_never_shows_its_start(
    before: bytes, cut: int, size: int
) -> None:
    """A task stopped while it wrote a secret (a signal, a timeout) leaves the start of it as
    the end of its output: that start is masked as the secret it begins."""
    text = before + SECRET.encode()[:cut]
    stream = StreamMask({"DEPLOY_TOKEN": SECRET})
    out = b"".join(stream.feed(text[i : i + size]) for i in range(0, len(text), size))
    out += stream.flush()
    assert out.endswith(MARK.encode())
    assert SECRET.encode()[:CUT_SECRET_BYTES] not in out[-len(MARK) - CUT_SECRET_BYTES :]


def test_an_output_ending_like_a_secrets_first_bytes_is_left_as_written() -> None:
    stream = StreamMask({"DEPLOY_TOKEN": SECRET})
    assert stream.feed(b"done s3c") + stream.flush() == b"done s3c"  # 3 bytes: not masked
    stream = StreamMask({"DEPLOY_TOKEN": SECRET})
    assert stream.feed(b"ok\n") + stream.flush() == b"ok\n"


def test_a_task_timed_out_while_writing_a_secret_leaves_none_of_it(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = write_plan(
        tmp_path,
        "tasks:\n  - id: t\n    secrets: [API_KEY_X]\n    timeout: 1\n    shell: true\n"
        "    run: printf 'A%s' \"$(printf '%s' \"$API_KEY_X\" | head -c 9)\"; sleep 30\n",
    )
    result = run_cli("-w", str(ws_path), "run", str(plan), env={"API_KEY_X": "s3cr3tVALUE-77"})
    assert "timed out after 1s" in result.stdout, result.stdout + result.stderr
    (log,) = (ws_path / "runs").glob("*/tasks/t/attempt-1.log")
    assert log.read_bytes() == b"A[API_KEY_X masked]"
    assert b"s3cr3t" not in log_path(ws_path).read_bytes()


def test_a_declared_secret_stays_with_its_task_even_when_the_policy_passes_its_name(
    tmp_path: Path, ws_path: Path
) -> None:
    (ws_path / "stoic.toml").write_text('[policy]\nenv_passthrough = ["PATH", "API_KEY_X"]\n')
    plan = write_plan(
        tmp_path,
        ONE + "  - {id: other, run: ['sh', '-c', 'echo \"${API_KEY_X:-nothing}\"']}\n",
    )
    result = run_cli("-w", str(ws_path), "run", str(plan), env={"API_KEY_X": "env-value-9"})
    assert result.exit_code == 0, result.stderr
    (log,) = (ws_path / "runs").glob("*/tasks/other/attempt-1.log")
    assert log.read_text() == "nothing\n"


ESCALATE = """tasks:
  - id: ask
    secrets: [API_KEY_X]
    shell: true
    run: >-
      printf '{"escalate": {"mode": "ambiguity", "question": "Should key %s be rotated?",
      "context": "key %s"}}' "$API_KEY_X" "$API_KEY_X" > "$STOIC_RESULT"
"""


def test_an_escalation_a_task_raises_is_masked_in_its_records_and_briefing(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = write_plan(tmp_path, ESCALATE)
    result = run_cli("-w", str(ws_path), "run", str(plan), env={"API_KEY_X": "env-value-9"})
    assert "env-value-9" not in result.stdout + result.stderr
    leaked = [
        str(path)
        for path, data in everything_in(ws_path).items()
        if b"env-value-9" in data and "/results/" not in str(path)
    ]
    assert leaked == []
    assert "[API_KEY_X masked]" in log_path(ws_path).read_text()
    assert run_cli("-w", str(ws_path), "audit").exit_code == 0


def test_a_secret_inside_a_longer_one_leaves_nothing_of_the_longer_one() -> None:
    """Masks are applied longest first whatever order they were gathered in: masking the
    shorter first would leave the rest of the longer secret in the text."""
    masked = mask_secrets("token=abcd-secret-xyz", {"SHORT": "secret", "LONG": "abcd-secret-xyz"})
    assert masked == "token=[LONG masked]"


def test_a_python_worker_that_was_given_a_secret_serves_no_other_task(
    tmp_path: Path, ws_path: Path
) -> None:
    """A secret's task may keep its value in a module global; the worker it ran in is not
    handed to a task that was not given the secret."""
    (tmp_path / "keeper.py").write_text(
        "import os\nKEPT = {}\n"
        "def keep():\n    KEPT['v'] = os.environ.get('API_KEY_X')\n"
        "def peek():\n    print('seen:', KEPT.get('v'))\n"
    )
    plan = write_plan(
        tmp_path,
        "tasks:\n  - {id: a, call: 'keeper:keep', secrets: [API_KEY_X]}\n"
        "  - {id: b, call: 'keeper:peek', depends_on: [a]}\n",
    )
    result = run_cli(
        "-w", str(ws_path), "run", str(plan), "--workers", "1", env={"API_KEY_X": "env-value-9"}
    )
    assert result.exit_code == 0, result.stderr
    (log,) = (ws_path / "runs").glob("*/tasks/b/attempt-1.log")
    assert log.read_text() == "seen: None\n"


def test_masking_a_record_leaves_what_stoic_reads_back_intact() -> None:
    """A short secret inside a digest, an attempt kind or a path of stoic's own files is left
    there: rewriting them would break a continue or the audit. A task's text is masked, under
    any key, outputs included."""
    decision = Decision(
        decision_type="execution",
        decision_outcome="succeeded",
        decision_reason="Task beef succeeded.",
        decision_inputs={"attempt_kind": "beef"},
        details={
            "plan_sha256": "00beef00",
            "outputs_file": {"path": "runs/r/tasks/beef/outputs.json", "sha256": "beef11"},
            "message": "the beef is out",
            "outputs": {"path": "beef", "sha256": "beef"},
        },
    )
    masked = mask_decision(decision, {"PIN_CODE": "beef"})
    assert masked.decision_reason == "Task [PIN_CODE masked] succeeded."
    assert masked.decision_inputs == {"attempt_kind": "beef"}
    assert masked.details == {
        "plan_sha256": "00beef00",
        "outputs_file": {"path": "runs/r/tasks/beef/outputs.json", "sha256": "beef11"},
        "message": "the [PIN_CODE masked] is out",
        "outputs": {"path": "[PIN_CODE masked]", "sha256": "[PIN_CODE masked]"},
    }
