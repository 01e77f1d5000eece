"""Reading the decision log as a person asks for it (`stoic log`, and any other interface)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from stoic.core.records import Record
from stoic.core.vocabulary import DecisionType, is_failure, unknown_word
from stoic.exceptions import UsageError
from stoic.store.interface import Store
from stoic.store.workspace import Workspace

__all__ = ["check_decision_type", "database", "records"]


def check_decision_type(decision_type: str | None) -> None:
    """Refuse a decision type the log cannot hold, naming the closest one."""
    if decision_type is None or decision_type in set(DecisionType):
        return
    known = [kind.value for kind in DecisionType]
    raise UsageError(unknown_word("decision type", decision_type, known, listed="known"))


def records(
    workspace: Store,
    *,
    tail: int | None = None,
    decision_type: str | None = None,
    run_id: str | None = None,
    failures: bool = False,
) -> Iterable[Record]:
    """The matching records, oldest first: streamed from the start in constant memory, or with
    `tail` the last N, read backwards from the end."""
    check_decision_type(decision_type)
    if tail is not None:
        return workspace.tail(tail, run_id=run_id, decision_type=decision_type, failures=failures)
    streamed = (
        workspace.records(run_id=run_id, decision_type=decision_type)
        if isinstance(workspace, Workspace)
        else (
            record
            for record in workspace.read()
            if (run_id is None or record.run_id == run_id)
            and (decision_type is None or record.decision_type == decision_type)
        )
    )
    return (
        record
        for record in streamed
        if not failures or is_failure(record.decision_type, record.decision_outcome)
    )


@contextlib.contextmanager
def database(url: str) -> Iterator[Store]:
    """The store of the PostgreSQL database at `url`, for reading, closed after."""
    from stoic.store.pg_store import PostgresStore  # psycopg only when a database is named

    with PostgresStore.open(url) as store:
        yield store
