"""Who decides on record: a person (`--as NAME`, else $STOIC_ACTOR, else the OS user) — never
a task. A command run from inside a task is refused where a person must decide, and is on
record as the task where a task may act (a proposal, an escalation)."""

from __future__ import annotations

import getpass
import os

from stoic.core.text import shortened
from stoic.core.users import NAME_PATTERN
from stoic.exceptions import ActingAsPerson, UsageError
from stoic.store.provenance import current_task

__all__ = ["human_actor", "proposer_actor"]


def human_actor(as_name: str | None) -> str:
    """The person deciding; refused inside a task, whatever `--as` or $STOIC_ACTOR say."""
    task = current_task()
    if task is not None:
        raise ActingAsPerson(
            f"refused: this command runs {task.describe()}, and a task cannot decide as a"
            " person (hint: a person runs it from their own shell)"
        )
    if as_name is not None:
        name, where = as_name, "--as"
    elif os.environ.get("STOIC_ACTOR"):
        name, where = os.environ["STOIC_ACTOR"], "$STOIC_ACTOR"
    else:
        name, where = getpass.getuser().lower(), "the OS user"  # JohnSmith is johnsmith
    if NAME_PATTERN.fullmatch(name) is None:  # the console's names: one person, one name
        hint = "" if where == "--as" else "; give --as NAME"
        raise UsageError(
            f"{where} is {shortened(name, 40)!r}: a person's name is 1 to 64 of a-z, 0-9,"
            " '.', '_', '-' (starting with a letter or digit), as the console's users are, so"
            f" it reads as no other actor (agent:…, system:…){hint}"
        )
    return f"human:{name}"


def proposer_actor(as_name: str | None) -> str:
    """Who proposes or escalates: the task itself when run from inside one, else a person."""
    task = current_task()
    if task is not None:
        if as_name is not None:
            raise ActingAsPerson(
                f"refused: --as {as_name} from {task.describe()}; a task proposes as itself"
                f" ({task.actor})"
            )
        return task.actor
    return human_actor(as_name)
