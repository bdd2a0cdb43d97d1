"""Side by side: `python -m bench.compare [--steps 1000] [--wide 1000] [--workers 8]
[--only chain|wide] [--sizes SMALL LARGE] [--systems NAME ...]`.

Runs a durable chain of `--steps` no-op steps, and a wide plan of `--wide` no-op steps in
`--workers` independent chains, on orchestration and, when they are installed, on LangGraph
(SQLite checkpointer, `durability="sync"`) and DBOS Transact (SQLite system database, one step
per checkpoint). Each is timed at the full size and at a fifth of it (the median of `--repeat`
tries; `--sizes` names both); the cost per step is the difference divided by the difference in
steps, so start-up cancels out. Prints each system's cost per step and its ratio to
orchestration's. A quick look at the chain alone: `--only chain --sizes 200 1000 --systems
orchestration` (`python -m bench.chain` also counts commits and statements, and profiles). A peer
that is not installed is skipped, saying so (`pip install langgraph
langgraph-checkpoint-sqlite dbos` to include them).
"""

from __future__ import annotations

import argparse
import importlib.util
import operator
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypedDict


class GraphState(TypedDict):
    """LangGraph's state: how many steps ran (each node adds one)."""

    done: Annotated[int, operator.add]


Runner = Callable[[Path, int, int], None]  # (folder, steps, chains): one durable run


def write_orchestration_plan(
    folder: Path, steps: int, chains: int, *, inline: bool = False
) -> Path:
    """The plan file of `chains` chains of `kind: python` no-op tasks, default settings but
    `max_workers` (`inline`: with `concurrency.inline_python`, to compare). Written before the
    clock starts: a user's plan file exists before `orch run`, and writing 1,000 tasks of YAML
    cost about 0.15 ms per task, counted per step before."""
    from orchestration.core.yamlfile import dump_plan

    per_chain = steps // chains
    tasks = [
        {
            "id": f"c{c}s{i}",
            "action": {"kind": "python", "call": "os:getpid"},
            "depends_on": [f"c{c}s{i - 1}"] if i else [],
        }
        for c in range(chains)
        for i in range(per_chain)
    ]
    plan_file = folder / "plan.yaml"
    body: dict[str, Any] = {"version": 1, "name": "compare", "tasks": tasks}
    concurrency: dict[str, Any] = {"max_workers": chains} if chains > 1 else {}
    if inline:
        concurrency["inline_python"] = True
    if concurrency:
        body["concurrency"] = concurrency
    plan_file.write_text(dump_plan(body))
    return plan_file


def orchestration_run(folder: Path, steps: int, chains: int, *, inline: bool = False) -> None:
    """Load the plan file (written now unless `prepare` wrote it) and run it to the end, as
    `orch run` does: load, validate, store the run, run every task."""
    from orchestration.engine.loop import Orchestrator, build_engine
    from orchestration.engine.plan import load_plan
    from orchestration.pluginhost.hooks import load_plugins
    from orchestration.store import Store

    plan_file = folder / "plan.yaml"
    if not plan_file.exists():
        write_orchestration_plan(folder, steps, chains, inline=inline)
    plan = load_plan(plan_file)
    engine = build_engine(plan, load_plugins(entry_points=False))
    with Store.open(f"sqlite:///{folder / 'state.db'}") as store:
        summary = Orchestrator.start(plan, store, run_id="compare", engine=engine)
        state = summary.run_until_stopped().state
    assert state == "completed", state


def langgraph_run(folder: Path, steps: int, chains: int) -> None:
    """A StateGraph of `chains` parallel chains of no-op nodes, checkpointed to SQLite at every
    superstep before the next one starts (`durability="sync"`)."""
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.graph import END, START, StateGraph

    def noop(_state: GraphState) -> dict[str, int]:
        return {"done": 1}

    graph = StateGraph(GraphState)
    per_chain = steps // chains
    for c in range(chains):
        previous = START
        for i in range(per_chain):
            name = f"c{c}s{i}"
            graph.add_node(name, noop)
            graph.add_edge(previous, name)
            previous = name
        graph.add_edge(previous, END)
    connection = sqlite3.connect(folder / "langgraph.db", check_same_thread=False)
    try:
        app = graph.compile(checkpointer=SqliteSaver(connection))
        config = {"configurable": {"thread_id": "compare"}, "recursion_limit": per_chain + 10}
        result = app.invoke({"done": 0}, config, durability="sync")
    finally:
        connection.close()
    assert result["done"] == per_chain * chains, result


def dbos_run(folder: Path, steps: int, chains: int) -> None:
    """A workflow of no-op steps (each step's result checkpointed in the SQLite system
    database before the next runs); with several chains, one child workflow per chain."""
    from dbos import DBOS

    url = f"sqlite:///{folder / 'dbos.db'}"
    DBOS(config={"name": "compare", "system_database_url": url, "log_level": "WARNING"})

    @DBOS.step()
    def noop(i: int) -> int:
        return i

    @DBOS.workflow()
    def chain(length: int) -> int:
        return sum(noop(i) >= 0 for i in range(length))

    @DBOS.workflow()
    def wide(count: int, length: int) -> int:
        handles = [DBOS.start_workflow(chain, length) for _ in range(count)]
        return sum(handle.get_result() for handle in handles)

    DBOS.launch()
    try:
        per_chain = steps // chains
        done = chain(per_chain) if chains == 1 else wide(chains, per_chain)
    finally:
        DBOS.destroy(destroy_registry=True)
    assert done == per_chain * chains, done


PEERS: dict[str, tuple[str, Runner, str]] = {
    "orchestration": ("orchestration", orchestration_run, "SQLite store, default settings"),
    "LangGraph": ("langgraph.checkpoint.sqlite", langgraph_run, 'SQLite, durability="sync"'),
    "DBOS": ("dbos", dbos_run, "SQLite system database"),
}


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


# What a runner needs before the clock starts (its input files), by runner.
PREPARE: dict[Runner, Callable[[Path, int, int], Any]] = {
    orchestration_run: write_orchestration_plan,
}


def timed(runner: Runner, steps: int, chains: int) -> float:
    with tempfile.TemporaryDirectory(prefix="orch-compare-") as tmp:
        if runner in PREPARE:
            PREPARE[runner](Path(tmp), steps, chains)
        started = time.perf_counter()
        runner(Path(tmp), steps, chains)
        return time.perf_counter() - started


def per_step(
    runner: Runner, steps: int, chains: int, repeat: int, small: int | None = None
) -> float:
    """Milliseconds per step: (time of `steps` - time of `small`, a fifth of them unless
    given) / the difference; the median of `repeat` tries (a shared machine's noise is larger
    than a fifth's start-up)."""
    small = max(chains, steps // 5 if small is None else small)
    timed(runner, chains * 2, chains)  # warm-up: imports and first-call costs are not per step
    tries = []
    for _ in range(repeat):
        runner_small = timed(runner, small, chains)
        runner_full = timed(runner, steps, chains)
        tries.append((runner_full - runner_small) / (steps - small) * 1000)
    return statistics.median(tries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1_000, help="steps of the chain")
    parser.add_argument("--wide", type=int, default=1_000, help="steps of the wide plan")
    parser.add_argument("--workers", type=int, default=8, help="chains of the wide plan")
    parser.add_argument("--repeat", type=int, default=3, help="tries per figure (the median)")
    parser.add_argument("--only", choices=["chain", "wide"], help="measure only this shape")
    parser.add_argument(
        "--sizes",
        type=int,
        nargs=2,
        metavar=("SMALL", "LARGE"),
        help="the two sizes whose difference is timed (default: a fifth of the steps, and them)",
    )
    parser.add_argument("--systems", nargs="+", choices=list(PEERS), help="only these systems")
    args = parser.parse_args()
    small = None
    if args.sizes:
        small, args.steps = args.sizes
        args.wide = args.sizes[1]
    shapes = {
        f"chain of {args.steps}": (args.steps, 1),
        f"wide: {args.wide} in {args.workers} chains": (args.wide, args.workers),
    }
    if args.only:
        shapes = {k: v for k, v in shapes.items() if k.startswith(args.only)}
    results: dict[str, dict[str, float]] = {}
    for name, (module, runner, how) in PEERS.items():
        if args.systems and name not in args.systems:
            continue
        if not installed(module):
            print(f"{name}: not installed, skipped ({module} is missing)")
            continue
        results[name] = {
            shape: per_step(runner, n, c, args.repeat, small) for shape, (n, c) in shapes.items()
        }
        print(f"{name} ({how}): measured")
    print()
    print(f"{'system':<16}" + "".join(f"{shape:>34}" for shape in shapes))
    base = results.get("orchestration", {})
    for name, figures in results.items():
        cells = []
        for shape, ms in figures.items():
            ratio = ms / base[shape] if base.get(shape) else float("nan")
            cells.append(f"{ms:>8.3f} ms/step  ({ratio:>4.2f}x ours)")
        print(f"{name:<16}" + "".join(f"{cell:>34}" for cell in cells))


if __name__ == "__main__":
    main()
