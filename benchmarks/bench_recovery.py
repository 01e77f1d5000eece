"""Recovery benchmarks; prints one JSON document.

- the classifier (`stoic.core.recovery.classify`) over a mix of failures and attempt kinds, next
  to a baseline measured in the same run: a bare function that looks the kind up in a dict;
- `stoic audit` with the behavioural invariants is measured by `bench_log.py` (its log is runs
  as the runner writes them: starts, ends, evaluations, run lifecycles).

Usage: python benchmarks/bench_recovery.py
"""

from __future__ import annotations

import itertools
import json
import time

from stoic.core.failure import Failure, FailureKind, Partial
from stoic.core.recovery import AttemptKind, RecoveryContext, classify

COUNT = 500_000


def _cases() -> list[tuple[Failure, RecoveryContext]]:
    failures = [
        Failure(kind, "x", partial=partial, retry_after_s=retry)
        for kind in FailureKind
        for partial in Partial
        for retry in (None, 2.0)
    ]
    contexts = [
        RecoveryContext(idempotent, attempt_kind)
        for idempotent in (True, False)
        for attempt_kind in AttemptKind
    ]
    return list(itertools.product(failures, contexts))


def main() -> None:
    cases = _cases()
    work = list(itertools.islice(itertools.cycle(cases), COUNT))
    table = {kind: kind.value for kind in FailureKind}

    def bare(failure: Failure, context: RecoveryContext) -> str:
        return table[failure.kind]

    start = time.perf_counter()
    for failure, context in work:
        bare(failure, context)
    baseline = COUNT / (time.perf_counter() - start)
    start = time.perf_counter()
    for failure, context in work:
        classify(failure, context)
    ours = COUNT / (time.perf_counter() - start)
    print(
        json.dumps(
            {
                "classifier": {
                    "classifications": COUNT,
                    "distinct_cases": len(cases),
                    "stoic_per_s": round(ours),
                    "baseline_dict_lookup_call_per_s": round(baseline),
                    "ratio": round(ours / baseline, 3),
                    "target_min_per_s": 500_000,
                }
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
