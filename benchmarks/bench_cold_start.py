"""Cold start of the `stoic` command, whole process; prints one JSON document.

Each command is timed as a fresh process next to baselines measured in the same run, in
alternating rounds (so a busy machine slows them alike):
- `stoic --version` next to `python -c pass` (the interpreter starting);
- `stoic status` and `stoic status --json` on a fresh workspace (answered by the quick path,
  `stoic.services.standing`) next to `python -c "import typer"`, to the smallest typer app that
  parses a path option (typer coerces parameters with pydantic, so that app is the floor of any
  typer command), and to the whole command (`stoic --local status`, which the quick path leaves
  to typer);
- `stoic --help`, which imports every command, for scale.

Wall time and CPU time (user + system) are the minimum and the median over the rounds; each
figure has its ratio to its baseline. `modules` counts what the process imported. Bytecode is
cached (in a temporary `PYTHONPYCACHEPREFIX`, warmed first) as an installed package's is.

Usage: python benchmarks/bench_cold_start.py [--rounds N] [--against OTHER_CHECKOUT]
(`--against` times the other checkout's `.venv/bin/stoic` in the same rounds, e.g. the commit
before a change; the module counts are this checkout's).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STOIC = Path(sys.executable).with_name("stoic")

# The console script's own code, with the modules imported counted as the process ends.
_COUNTED = (
    "import atexit, sys\n"
    "atexit.register(lambda: sys.stderr.write(f'MODULES {len(sys.modules)}\\n'))\n"
    "sys.argv = ['stoic', *sys.argv[1:]]\n"
    "from stoic.cli.entry import main\n"
    "sys.exit(main())\n"
)

_TYPER_APP = """
from pathlib import Path
import typer
app = typer.Typer()
@app.callback()
def root(workspace: Path | None = typer.Option(None, "--workspace", "-w")) -> None: ...
@app.command()
def status() -> None:
    print("ok")
app(args=["-w", ".", "status"], standalone_mode=False)
"""

TARGETS_MS = {"version": 60.0, "status": 120.0}
"""What the whole process should take on a quiet machine."""


def _environment(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    env.pop("STOIC_WORKSPACE", None)
    return env


def _once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall * 1000, cpu * 1000


def _modules(args: list[str], env: dict[str, str]) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _COUNTED, *args], env=env, capture_output=True, text=True
    )
    return int(done.stderr.rsplit("MODULES ", 1)[1].split()[0])


def _figure(walls: list[float], cpus: list[float]) -> dict[str, float]:
    return {
        "wall_ms_min": round(min(walls), 1),
        "wall_ms_median": round(statistics.median(walls), 1),
        "cpu_ms_min": round(min(cpus), 1),
        "cpu_ms_median": round(statistics.median(cpus), 1),
    }


def _ratio(figure: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float]:
    return {
        "min": round(figure["wall_ms_min"] / baseline["wall_ms_min"], 2),
        "median": round(figure["wall_ms_median"] / baseline["wall_ms_median"], 2),
        "cpu_min": round(figure["cpu_ms_min"] / baseline["cpu_ms_min"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument(
        "--against",
        type=Path,
        default=None,
        help="another checkout: its .venv's stoic is timed in the same rounds",
    )
    args = parser.parse_args()
    other = args.against.resolve() / ".venv" / "bin" / "stoic" if args.against else None
    with tempfile.TemporaryDirectory(prefix="stoic-cold-") as tmp:
        root = Path(tmp)
        env = _environment(root / "pycache")
        workspace = root / "ws"
        subprocess.run(
            [str(STOIC), "init", str(workspace)], env=env, check=True, capture_output=True
        )
        (root / "app.py").write_text(_TYPER_APP)
        commands: dict[str, list[str]] = {
            "python_pass": [sys.executable, "-c", "pass"],
            "import_typer": [sys.executable, "-c", "import typer"],
            "typer_app": [sys.executable, str(root / "app.py")],
            "version": [str(STOIC), "--version"],
            "status": [str(STOIC), "-w", str(workspace), "status"],
            "status_json": [str(STOIC), "-w", str(workspace), "status", "--json"],
            "status_whole": [str(STOIC), "--local", "-w", str(workspace), "status"],
            "help": [str(STOIC), "--help"],
        }
        if other is not None:
            commands["other_version"] = [str(other), "--version"]
            commands["other_status"] = [str(other), "-w", str(workspace), "status"]
        for argv in commands.values():  # writes the bytecode cache
            _once(argv, env)
        walls: dict[str, list[float]] = {name: [] for name in commands}
        cpus: dict[str, list[float]] = {name: [] for name in commands}
        for round_ in range(args.rounds):
            names = list(commands) if round_ % 2 == 0 else list(reversed(commands))
            for name in names:
                wall, cpu = _once(commands[name], env)
                walls[name].append(wall)
                cpus[name].append(cpu)
        figures = {name: _figure(walls[name], cpus[name]) for name in commands}
        counted = {
            "version": ["--version"],
            "status": ["-w", str(workspace), "status"],
            "status_json": ["-w", str(workspace), "status", "--json"],
            "status_whole": ["--local", "-w", str(workspace), "status"],
            "help": ["--help"],
        }
        for name, stoic_args in counted.items():
            figures[name]["modules"] = _modules(stoic_args, env)
        figures["python_pass"]["modules"] = _modules_of_python(env)
    result: dict[str, Any] = {
        "rounds": args.rounds,
        "baselines": {name: figures[name] for name in ("python_pass", "import_typer", "typer_app")},
        "version": {
            **figures["version"],
            "target_ms": TARGETS_MS["version"],
            "ratio_to_python_pass": _ratio(figures["version"], figures["python_pass"]),
        },
    }
    for name in ("status", "status_json"):
        result[name] = {
            **figures[name],
            "target_ms": TARGETS_MS["status"],
            "ratio_to_import_typer": _ratio(figures[name], figures["import_typer"]),
            "ratio_to_typer_app": _ratio(figures[name], figures["typer_app"]),
            "ratio_to_the_whole_command": _ratio(figures[name], figures["status_whole"]),
        }
    result["status_whole"] = {
        **figures["status_whole"],
        "ratio_to_typer_app": _ratio(figures["status_whole"], figures["typer_app"]),
    }
    result["help"] = {
        **figures["help"],
        "ratio_to_typer_app": _ratio(figures["help"], figures["typer_app"]),
    }
    if other is not None:
        result["against"] = {
            "checkout": str(args.against),
            "version": figures["other_version"],
            "status": figures["other_status"],
            "this_over_other": {
                "version": _ratio(figures["version"], figures["other_version"]),
                "status": _ratio(figures["status"], figures["other_status"]),
            },
        }
    print(json.dumps(result, indent=2))


def _modules_of_python(env: dict[str, str]) -> int:
    code = "import sys; sys.stderr.write(f'MODULES {len(sys.modules)}\\n')"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return int(done.stderr.rsplit("MODULES ", 1)[1].split()[0])


if __name__ == "__main__":
    main()
