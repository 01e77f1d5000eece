"""The `stoic.toml` that `stoic init` writes, generated from the settings models: every setting
appears in it, commented, with its default and its description."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from stoic.store.config import Settings
from stoic.store.gate_settings import GateSettings, gate_rules_example

__all__ = ["default_settings_text"]


def _toml_value(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, dict):
        pairs = (f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(pairs) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'" if "\\" in value and "'" not in value else f'"{value}"'
    return repr(value)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else f'"{key}"'


def default_settings_text() -> str:
    """The `stoic.toml` that `stoic init` writes: every setting commented, with its default."""
    lines = [
        "# stoic workspace settings.",
        "# Every setting is shown with its default value; uncomment a line to change it.",
    ]
    defaults = Settings()
    for section_name, section_field in Settings.model_fields.items():
        section = getattr(defaults, section_name)
        if isinstance(section, list):
            lines += ["", *_NOTIFIER_EXAMPLE]
            continue
        if isinstance(section, dict):
            lines += ["", *_SECRETS_EXAMPLE]
            continue
        lines += ["", f"[{section_name}]"]
        for name, setting in type(section).model_fields.items():
            if isinstance(section, GateSettings) and name == "rules":
                lines += gate_rules_example()
                continue
            lines.append(f"# {setting.description}")
            lines.append(f"# {name} = {_toml_value(getattr(section, name))}")
        del section_field
    return "\n".join(lines) + "\n"


_NOTIFIER_EXAMPLE = [
    "# Notifiers: where notices of pauses, escalations, suggestions, run ends and audit",
    "# failures go (kind: console, file, webhook, command). A failing notifier is recorded",
    "# and never blocks the work. Without [[notifiers]], pauses, resumes, escalations and",
    "# audit failures are printed on stderr. Examples:",
    "# [[notifiers]]",
    '# kind = "console"',
    '# events = ["paused", "resumed", "escalation_raised", "audit_failed"]',
    "# [[notifiers]]",
    '# kind = "file"',
    '# path = "notifications.ndjson"',
    "# [[notifiers]]",
    '# kind = "webhook"',
    '# url = "https://hooks.slack.com/services/T000/B000/XXXX"',
    '# format = "slack"',
    '# events = ["escalation_raised", "run_failed", "run_awaiting_human", "paused"]',
    "# timeout = 5.0",
    "# [[notifiers]]",
    '# kind = "command"',
    '# command = ["notify-send", "stoic"]',
]

_SECRETS_EXAMPLE = [
    "# Secrets: a task (or meta, for every task) lists the secrets it needs (`secrets:`);",
    "# each is taken from stoic's environment, else from a file named here. A task is given",
    "# only the secrets it lists, and their values are masked in everything stoic records.",
    "# [secrets]",
    '# DEPLOY_TOKEN = {file = "secrets/deploy_token"}',
]
