"""`python -m bench [--quick]`: runs every benchmark, prints the table, saves JSON (and plots
and the bench/README.md table in the full mode)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import report, scenarios
from bench.procs import spawn_echo
from bench.scenarios import Bench, Sizes

HERE = Path(__file__).resolve().parent

Scenario = Callable[[Bench], Awaitable[dict[str, Any]]]
ORDER: list[tuple[str, Scenario]] = [
    ("scale", scenarios.scale),
    ("unary", scenarios.unary),
    ("storm", scenarios.storm),
    ("fanout", scenarios.fanout),
    ("journal", scenarios.journal),
    ("restore", scenarios.restore),
]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (what make test runs)")
    parser.add_argument("--runs", type=int, help="repetitions (medians are reported)")
    parser.add_argument("--sessions", type=int, help="override the number of sessions")
    parser.add_argument("--only", help="comma-separated scenarios (scale is always run)")
    parser.add_argument("--out", type=Path, help="JSON output path")
    parser.add_argument(
        "--from-json", type=Path, help="publish (table, plots, README) from a saved full run"
    )
    parser.add_argument(
        "--no-readme", action="store_true", help="full mode: do not rewrite bench/README.md"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        saved["summary"] = report.summarize(saved["runs"])
        print(report.table(saved["summary"]))
        _publish(saved, readme=True)
        return 0
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.sessions:
        sizes = Sizes(**{**sizes.__dict__, "sessions": args.sessions})
    runs = args.runs or (1 if args.quick else 3)
    only = set(args.only.split(",")) | {"scale"} if args.only else None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = args.out or (
        Path(tempfile.gettempdir()) / "wa-sessions-bench-quick.json"
        if args.quick
        else HERE / "results" / f"{stamp}.json"
    )
    result: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "started": stamp,
        "machine": report.machine(),
        "sizes": sizes.__dict__,
        "runs": [],
        "errors": [],
    }
    for index in range(runs):
        print(f"run {index + 1}/{runs} ...", file=sys.stderr, flush=True)
        run, errors = asyncio.run(_one_run(sizes, only))
        result["runs"].append(run)
        result["errors"] += errors
    result["machine"]["loadavg_end"] = os.getloadavg()
    result["summary"] = report.summarize(result["runs"])
    # NOTE: quick mode's sizes are far too small to meet or miss a target: it prints what it
    # measured, never a verdict, and ends with one line saying whether everything ran.
    print(report.table(result["summary"], verdicts=not args.quick))
    for error in result["errors"]:
        print(f"ERROR {error}", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str))
    print(f"wrote {out}", file=sys.stderr)
    if not args.quick:
        _publish(result, readme=not args.no_readme)
    else:
        ran = sorted({name for run in result["runs"] for name in run})
        verdict = f"{len(result['errors'])} failed" if result["errors"] else "no errors"
        print(
            f"bench-quick: {len(ran)} scenarios ran ({', '.join(ran)}), {verdict}; tiny sizes, "
            "so no targets are judged (make bench measures them)"
        )
    return 1 if result["errors"] else 0


def _publish(result: dict[str, Any], readme: bool) -> None:
    """Full mode: the plots of the median run, bench/latest.json and the README table."""
    runs = result["runs"]
    with_storm = [r for r in runs if "storm" in r] or runs
    median_run = sorted(with_storm, key=lambda r: r.get("storm", {}).get("reconnected_s", 0))[
        len(with_storm) // 2
    ]
    if not readme:
        return
    for path in report.plot(median_run, HERE):
        print(f"wrote {path}", file=sys.stderr)
    latest = {k: v for k, v in result.items() if k != "runs"}
    (HERE / "latest.json").write_text(json.dumps(latest, indent=1, default=str))
    m = result["machine"]
    block = (
        f"Taken {result['started']} on {m['nproc']} cores ({m['cpu_model']}), "
        f"{m['memory_gb']} GB, Linux {m['kernel']}, Python {m['python']}, grpcio "
        f"{m['grpcio']}, protobuf {m['protobuf']}; {len(runs)} runs, medians; load average "
        f"{m['loadavg'][0]:.2f} at the start, {m['loadavg_end'][0]:.2f} at the end.\n\n"
        + report.table(result["summary"], markdown=True)
        + "\n"
    )
    if result["errors"]:
        block += "\nErrors: " + "; ".join(result["errors"]) + "\n"
    report.update_readme(HERE / "README.md", block)


async def _one_run(sizes: Sizes, only: set[str] | None) -> tuple[dict[str, Any], list[str]]:
    workdir = Path(tempfile.mkdtemp(prefix="wa-sessions-bench-"))
    echo = spawn_echo()
    bench = Bench(sizes, workdir / "data", echo)
    run: dict[str, Any] = {}
    errors: list[str] = []
    try:
        await bench.open()
        for name, scenario in ORDER:
            if only is not None and name not in only:
                continue
            began = time.monotonic()
            print(f"  {name} ...", file=sys.stderr, flush=True)
            try:
                run[name] = await scenario(bench)
            except Exception as error:
                traceback.print_exc()
                errors.append(f"{name}: {type(error).__name__}: {error}")
                if name == "scale":
                    break
            print(f"  {name} done in {time.monotonic() - began:.1f} s", file=sys.stderr)
    finally:
        await bench.close()
        echo.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return run, errors
