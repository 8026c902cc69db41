"""Tool-server costs through MCP over stdio, against the reference's way in the same run.

    .venv/bin/python bench/tools.py [--calls 300] [--concurrent-calls 400]

python tool: arpo's sandboxed server (``python -m arpo_tools.python_tool``: a call is a fork of a warm zygote
with every isolation layer the kernel allows) against the reference's way, a fresh ``python -c`` subprocess per
call with no sandbox, served by a minimal MCP server over stdio too (``bench/tools.py --serve-baseline``), so
both sides pay the same MCP round trip. Measured: latency p50/p99 of sequential calls (``print(1)``, and code
that imports numpy and sympy), the CPU time those calls cost this client and the server's whole process tree
together (per call; far steadier than times when other work shares the machine), and calls/s with 2 and 16
calls in flight on one session (as a rollout engine keeps one long-lived session per server). The ratio column is
baseline ÷ arpo (higher is better). ``PYTHONPATH`` is passed on to arpo's server: point it at another checkout's
``packages/arpo-tools/src`` to measure that version (alternate the runs: the machines are noisy).

Goals (issue 3): ≥ 3× faster than the baseline with the full sandbox, p50 ≤ 5 ms. Nothing here is asserted; the
machines are noisy, so compare the ratios of one run. Add further tool sections as functions returning ``Row``s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, get_default_environment, stdio_client

TRIVIAL = "print(1)"
HEAVY = "import numpy, sympy\nprint(numpy.arange(4).sum(), sympy.factorint(360))"


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table: a measure for arpo and for the baseline."""

    measure: str
    arpo: float
    baseline: float
    unit: str
    higher_is_better: bool = False

    @property
    def ratio(self) -> float:
        """How many times better arpo is."""
        if self.higher_is_better:
            return self.arpo / self.baseline
        return self.baseline / self.arpo


def serve_baseline() -> None:
    """The reference's python tool as an MCP server: ``python -c`` in a fresh subprocess per call, no sandbox."""
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("baseline-python")

    @server.tool(name="python", description="Runs Python code in a fresh subprocess (no sandbox).")
    async def python(code: str) -> str:
        result = await anyio.run_process([sys.executable, "-c", code], check=False)
        return result.stdout.decode() or result.stderr.decode()

    server.run("stdio")


def arpo_server() -> StdioServerParameters:
    """arpo's python tool server; it gets ``PYTHONPATH`` when set, so another checkout's code can be measured."""
    env = get_default_environment()
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return StdioServerParameters(command=sys.executable, args=["-m", "arpo_tools.python_tool"], env=env)


def baseline_server() -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=[str(Path(__file__).resolve()), "--serve-baseline"])


_QUIET = open(os.devnull, "w")  # noqa: SIM115  (the servers' log lines would drown the table)


async def _with_session(params: StdioServerParameters, work: Callable[[ClientSession], Awaitable[None]]) -> None:
    async with stdio_client(params, errlog=_QUIET) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        await work(session)


async def _call(session: ClientSession, code: str) -> None:
    result = await session.call_tool("python", {"code": code})
    if result.is_error:
        raise RuntimeError(f"python tool failed: {result.content}")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


_TICK = os.sysconf("SC_CLK_TCK")


def _tree_cpu_s(root: int) -> float:
    """CPU seconds of ``root`` and every process below it, the reaped ones included (Linux ``/proc``)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = sum(int(value) for value in fields[11:15]) / _TICK  # utime stime cutime cstime
    total, frontier = 0.0, [root]
    while frontier:
        pid = frontier.pop()
        total += times.get(pid, 0.0)
        frontier.extend(child for child, parent in parents.items() if parent == pid)
    return total


def _own_cpu_s() -> float:
    usage = os.times()
    return usage.user + usage.system


async def latencies(params: StdioServerParameters, code: str, calls: int) -> tuple[list[float], float]:
    """Seconds per call, ``calls`` sequential calls after 10 warm-up calls; and the CPU seconds per call of this
    client and the whole server process tree together (less sensitive to other work on the machine than times)."""
    out: list[float] = []
    cpu: list[float] = []

    async def work(session: ClientSession) -> None:
        for _ in range(10):
            await _call(session, code)
        servers = _children(os.getpid())
        before = _own_cpu_s() + sum(map(_tree_cpu_s, servers))
        for _ in range(calls):
            start = time.perf_counter()
            await _call(session, code)
            out.append(time.perf_counter() - start)
        cpu.append((_own_cpu_s() + sum(map(_tree_cpu_s, servers)) - before) / calls)

    await _with_session(params, work)
    return out, cpu[0]


def _children(pid: int) -> list[int]:
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


async def throughput(params: StdioServerParameters, code: str, calls: int, in_flight: int) -> float:
    """Calls per second with ``in_flight`` calls outstanding at all times on one session."""
    result: list[float] = []

    async def work(session: ClientSession) -> None:
        for _ in range(in_flight):
            await _call(session, code)
        remaining = calls

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await _call(session, code)

        start = time.perf_counter()
        async with anyio.create_task_group() as group:
            for _ in range(in_flight):
                group.start_soon(worker)
        result.append(calls / (time.perf_counter() - start))

    await _with_session(params, work)
    return result[0]


def raw_subprocess_ms(calls: int) -> float:
    """p50 of a bare ``python -c`` subprocess, without MCP: what the baseline's calls are made of."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", TRIVIAL], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


async def python_tool_rows(calls: int, concurrent_calls: int) -> list[Row]:
    rows: list[Row] = []
    for label, code, n in (("print(1)", TRIVIAL, calls), ("import numpy+sympy", HEAVY, max(20, calls // 5))):
        ours, ours_cpu = await latencies(arpo_server(), code, n)
        base, base_cpu = await latencies(baseline_server(), code, n)
        rows.append(
            Row(f"python {label}: latency p50", _percentile(ours, 0.5) * 1e3, _percentile(base, 0.5) * 1e3, "ms")
        )
        rows.append(
            Row(f"python {label}: latency p99", _percentile(ours, 0.99) * 1e3, _percentile(base, 0.99) * 1e3, "ms")
        )
        rows.append(Row(f"python {label}: CPU per call", ours_cpu * 1e3, base_cpu * 1e3, "ms"))
    for in_flight in (2, 16):
        ours_rate = await throughput(arpo_server(), TRIVIAL, concurrent_calls, in_flight)
        base_rate = await throughput(baseline_server(), TRIVIAL, concurrent_calls, in_flight)
        rows.append(Row(f"python print(1): {in_flight} in flight", ours_rate, base_rate, "calls/s", True))
    heavy_calls = max(32, concurrent_calls // 10)  # the baseline pays ≈ 0.3 s of imports per call
    ours_rate = await throughput(arpo_server(), HEAVY, heavy_calls, 16)
    base_rate = await throughput(baseline_server(), HEAVY, heavy_calls, 16)
    rows.append(Row("python numpy+sympy: 16 in flight", ours_rate, base_rate, "calls/s", True))
    return rows


def print_table(title: str, rows: list[Row]) -> None:
    print(f"\n{title}")
    print(f"{'measure':40} {'arpo':>10} {'baseline':>10} {'unit':>8} {'ratio':>7}")
    for row in rows:
        print(f"{row.measure:40} {row.arpo:10.2f} {row.baseline:10.2f} {row.unit:>8} {row.ratio:6.1f}×")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="sequential calls per latency measure")
    parser.add_argument("--concurrent-calls", type=int, default=400, help="calls per throughput measure")
    parser.add_argument("--serve-baseline", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--search", action="store_true", help="also run bench/search.py (BM25 vs rank-bm25, 100k passages, ~1 min)"
    )
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline()
        return
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f} at the start (other work skews both sides)")
    print(f"bare `python -c` subprocess (no MCP), p50: {raw_subprocess_ms(30):.1f} ms")
    rows = anyio.run(python_tool_rows, args.calls, args.concurrent_calls)
    print_table("python tool through MCP over stdio: arpo sandbox vs fresh `python -c` per call (× better)", rows)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    if args.search:
        import runpy
        import sys

        print("\nsearch tool: bench/search.py")
        sys.argv = [sys.argv[0]]
        runpy.run_path(str(Path(__file__).with_name("search.py")), run_name="__main__")


if __name__ == "__main__":
    main()
