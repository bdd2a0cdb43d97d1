"""A run's task expressions (acceptance checks, branch conditions), compiled once per spec."""

from __future__ import annotations

from orchestration.core.models import TaskRecord, TaskSpec
from orchestration.pluginhost.hooks import Plugins
from orchestration.rules.expressions import Expression, compile_expression


class TaskExpressions:
    """Compiles a task's acceptance checks and branch conditions on first use, then keeps them.

    Worker threads read it (acceptance) while the loop thread may `forget` a task whose spec a
    human changed; `forget` swaps in a new dict instead of deleting from one a worker reads.
    """

    def __init__(self, plan_path: str, plugins: Plugins) -> None:
        self._plan_path = plan_path
        self._plugins = plugins  # read at each compile: the plugins' functions as they are then
        self._compiled: dict[str, list[Expression]] = {}

    def acceptance(self, task_id: str, spec: TaskSpec) -> list[Expression]:
        """The task's `acceptance` expressions, compiled from `spec` the first time."""
        if task_id not in self._compiled:
            self._compiled[task_id] = [
                compile_expression(
                    source,
                    file=self._plan_path,
                    rule=f"{task_id}.acceptance[{i}]",
                    functions=self._plugins.rule_functions,
                )
                for i, source in enumerate(spec.acceptance)
            ]
        return self._compiled[task_id]

    def branch_when(self, task: TaskRecord, index: int) -> Expression | None:
        """The `when` condition of the task's branch `index`, or None if it has none."""
        source = task.spec.branches[index].when
        if source is None:
            return None
        key = f"{task.task_id}.branches[{index}]"
        if key not in self._compiled:
            self._compiled[key] = [
                compile_expression(
                    source,
                    file=self._plan_path,
                    rule=key,
                    functions=self._plugins.rule_functions,
                )
            ]
        return self._compiled[key][0]

    def forget(self, task_id: str) -> None:
        """Drop what was compiled for the task: its spec changed, compile it anew when used."""
        self._compiled = {
            key: value
            for key, value in self._compiled.items()
            if key != task_id and not key.startswith(f"{task_id}.")
        }
