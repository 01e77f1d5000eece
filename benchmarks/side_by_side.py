"""Two checkouts of stoic measured in one run, alternating; prints one JSON document.

Each checkout runs its own benchmark scripts with its own `.venv`, so a figure of this tree is
compared with the same figure of another commit on the same machine at the same time. Rounds
alternate which checkout goes first; each figure is the median over the rounds, and `ratio` is
this tree's figure over the other's, oriented so that above 1 is better.

Usage: python benchmarks/side_by_side.py OTHER_CHECKOUT [--rounds N] [--quick] [--records N]
(OTHER_CHECKOUT holds an installed `.venv`, e.g. a `git worktree add` of the older commit with
`make .venv/.installed-stamp` run in it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Figure = tuple[str, str, Callable[[dict[str, Any]], float], bool]
"""(name, script, how to read it from the script's JSON, whether higher is better)."""

FIGURES: tuple[Figure, ...] = (
    ("python_chain_ms_per_task", "run", lambda j: j["python_chain"]["ms_per_task"], False),
    ("shell_chain_ratio_to_bare", "run", lambda j: j["shell_chain"]["ratio"], False),
    ("wide_tasks_per_s", "run", lambda j: j["python_wide"]["tasks_per_s"], True),
    ("approve_ms_at_20000_pending", "queue", lambda j: j["approve"]["ms_at_20000_pending"], False),
    ("audit_records_per_s", "log", lambda j: j["audit"]["stoic_audit_records_per_s"], True),
)


def run_script(checkout: Path, script: str, args: list[str]) -> dict[str, Any]:
    python = checkout / ".venv" / "bin" / "python"
    done = subprocess.run(
        [str(python), str(checkout / "benchmarks" / f"bench_{script}.py"), *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=checkout,
    )
    parsed: dict[str, Any] = json.loads(done.stdout)
    return parsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", type=Path, help="the other checkout (with its .venv)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="bench_run.py --quick")
    parser.add_argument("--records", type=int, default=200_000, help="bench_log.py's log size")
    parser.add_argument("--proposals", type=int, default=20_000, help="bench_queue.py's queue")
    args = parser.parse_args()
    here = Path(__file__).resolve().parent.parent
    checkouts = {"this": here, "other": args.other.resolve()}
    script_args = {
        "run": ["--quick"] if args.quick else [],
        "queue": ["--proposals", str(args.proposals)],
        "log": ["--records", str(args.records)],
    }
    samples: dict[str, dict[str, list[float]]] = {
        name: {"this": [], "other": []} for name, *_ in FIGURES
    }
    for round_no in range(args.rounds):
        order = ["this", "other"] if round_no % 2 == 0 else ["other", "this"]
        for script in ("run", "queue", "log"):
            for which in order:
                result = run_script(checkouts[which], script, script_args[script])
                for name, source, read, _ in FIGURES:
                    if source == script:
                        samples[name][which].append(read(result))
            print(f"round {round_no + 1}: bench_{script} done", file=sys.stderr)
    figures: dict[str, Any] = {}
    for name, _, _, higher_is_better in FIGURES:
        this = statistics.median(samples[name]["this"])
        other = statistics.median(samples[name]["other"])
        ratio = this / other if higher_is_better else other / this
        figures[name] = {
            "this": round(this, 3),
            "other": round(other, 3),
            "this_runs": samples[name]["this"],
            "other_runs": samples[name]["other"],
            "ratio_this_over_other_higher_is_better": round(ratio, 3),
        }
    print(
        json.dumps(
            {"this": str(here), "other": str(checkouts["other"]), "figures": figures}, indent=2
        )
    )


if __name__ == "__main__":
    main()
