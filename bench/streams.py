"""`GET /runs` while many event streams are open: `python -m bench.streams --streams 1000`.

Starts the real `orch serve` over a store with one run paused at a breakpoint, opens N event
streams on that run from one client (the per-client cap raised to allow them), then times
`GET /api/v1/runs` a number of times and prints the median and the worst. Before the streams
shared one poller per run, each stream read the store twice a second through the thread pool the
endpoints use, and with 1,000 streams a `GET /runs` took about 1.7 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import httpx

from orchestration.core.yamlfile import dump_plan
from orchestration.engine.loop import Orchestrator, build_engine
from orchestration.engine.plan import load_plan
from orchestration.store import Store

RULES = (
    "breakpoints:\n  - name: hold\n    at: before\n    when: \"task_id == 'held'\"\n"
    "    action: pause\n    message: held\n"
)
START_TIMEOUT_S = 60.0


def paused_store(directory: Path) -> str:
    (directory / "hold.yaml").write_text(RULES)
    plan = {
        "version": 1,
        "name": "bench-streams",
        "rules": ["hold.yaml"],
        "tasks": [{"id": "held", "action": {"kind": "shell", "run": [sys.executable, "-c", ""]}}],
    }
    (directory / "plan.yaml").write_text(dump_plan(plan))
    url = f"sqlite:///{directory / 'state.db'}"
    loaded = load_plan(directory / "plan.yaml")
    with Store.open(url) as store:
        run = Orchestrator.start(loaded, store, run_id="bench", engine=build_engine(loaded))
        run.engine.plugins.muted.add("console")
        run.run_until_stopped()
    return url


def serve(url: str, port: int, token_file: Path, streams: int) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "orchestration", "serve", "--db", url, "--port", str(port)]
    argv += ["--token-file", str(token_file), "--streams-per-client", str(streams + 10)]
    argv += ["--rate-limit", "100000", "--burst", "100000"]
    env = {k: v for k, v in os.environ.items() if k != "ORCH_DB"}
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_until_up(base: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/login", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("the server did not start")


async def measure(base: str, token: str, streams: int, samples: int) -> list[float]:
    limits = httpx.Limits(max_connections=streams + 10, max_keepalive_connections=10)
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=120) as client,
        AsyncExitStack() as stack,
    ):
        opened = await asyncio.gather(
            *(
                stack.enter_async_context(client.stream("GET", "/api/v1/runs/bench/events/stream"))
                for _ in range(streams)
            )
        )
        assert all(r.status_code == 200 for r in opened), "a stream was refused"
        await asyncio.sleep(2)  # let the streams settle into their steady state
        times = []
        for _ in range(samples):
            start = time.perf_counter()
            answer = await client.get("/api/v1/runs")
            times.append(time.perf_counter() - start)
            assert answer.status_code == 200
        return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--port", type=int, default=8799)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        url = paused_store(Path(scratch))
        token_file = Path(scratch) / "token"
        server = serve(url, args.port, token_file, args.streams)
        try:
            base = f"http://127.0.0.1:{args.port}"
            wait_until_up(base)
            token = token_file.read_text().strip()
            times = asyncio.run(measure(base, token, args.streams, args.samples))
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(30)
    print(
        f"GET /api/v1/runs with {args.streams} open event streams, {args.samples} samples: "
        f"median {statistics.median(times) * 1000:.0f} ms, worst {max(times) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
