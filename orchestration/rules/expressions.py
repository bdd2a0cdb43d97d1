"""The sandbox for rule expressions: parse and check once at load, evaluate with hard bounds."""

from __future__ import annotations

import ast
import difflib
import logging
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from simpleeval import InvalidExpression, SimpleEval

from orchestration.core.context import CONTEXT_NAME_SET, FrozenMap, freeze
from orchestration.core.errors import RuleError
from orchestration.core.guarded import call_in_thread
from orchestration.rules.expression_limits import (
    BINARY_OPERATORS,
    BUILTIN_FUNCTIONS,
    COMPARE_OPERATORS,
    UNARY_OPERATORS,
    FunctionLimitError,
    check_pattern,
)

logger = logging.getLogger(__name__)

MAX_EXPRESSION_CHARS = 2_000
MAX_NESTING_DEPTH = 50
# CPU-time budget for one evaluation (seconds), checked before every node whose cost depends on
# the data (function calls, comparisons that may walk a sequence, computed subscripts).
MAX_EVALUATION_SECONDS = 0.05
# Wall-clock limit of one call of a plugin's rule function (on a thread of its own): five times
# the CPU budget, so that starting the thread on a busy machine does not fail a quick function.
PLUGIN_FUNCTION_SECONDS = 0.25

_thread_time = time.thread_time

# Node types an expression may contain; everything else is refused at load time.
_ALLOWED_NODES: tuple[type[ast.AST], ...] = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.BinOp,
    ast.UnaryOp,
    ast.Compare,
    ast.IfExp,
    ast.Call,
    ast.Constant,
    ast.Name,
    ast.Load,
    ast.Subscript,
    ast.Slice,
    ast.List,
    ast.Tuple,
    ast.Set,
    *BINARY_OPERATORS,
    *UNARY_OPERATORS,
    *COMPARE_OPERATORS,
)

# Why a construct is refused, in words a rule author understands.
_REFUSALS: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access (`.name`) is not allowed; use the documented functions",
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed; use any(), all(), min(), max()",
    ast.SetComp: "comprehensions are not allowed; use any(), all(), min(), max()",
    ast.DictComp: "comprehensions are not allowed; use any(), all(), min(), max()",
    ast.GeneratorExp: "comprehensions are not allowed; use any(), all(), min(), max()",
    ast.JoinedStr: "f-strings are not allowed",
    ast.FormattedValue: "format specs are not allowed",
    ast.Starred: "starred arguments are not allowed",
    ast.NamedExpr: "assignment (`:=`) is not allowed",
    ast.Dict: "dict literals are not allowed",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.YieldFrom: "yield is not allowed",
    ast.keyword: "keyword arguments are not allowed; pass arguments by position",
}

_CONSTANT_TYPES = (str, int, float, bool, type(None))
MAX_MEMO_ENTRIES = 1024  # remembered results per expression


class Expression:
    """A rule expression parsed and checked once; `evaluate` runs it against a context.

    Evaluation is simpleeval's own tree walk over the tree parsed at load (its
    `previously_parsed` argument), with this module's operators, functions and time budget.
    """

    __slots__ = (
        "_functions",
        "_key_names",
        "_memo",
        "_timed_nodes",
        "_tree",
        "file",
        "line",
        "names",
        "rule",
        "source",
    )

    def __init__(
        self,
        source: str,
        tree: ast.Expression,
        names: frozenset[str],
        functions: Mapping[str, Callable[..., Any]],
        *,
        rule: str | None,
        file: str | None,
        line: int | None,
    ) -> None:
        self.source = source
        self.names = names  # the context names the expression reads
        self.rule = rule
        self.file = file
        self.line = line
        self._tree = tree
        self._functions = functions
        # The nodes whose cost depends on the data: the deadline is checked before each of them.
        self._timed_nodes = _timed_nodes(tree)
        # Results by the values the expression reads: an expression of built-in functions is
        # pure, and steps repeat the same values (no output, no failures) again and again, so
        # the tree is walked only when the values it reads change.
        # None when the expression calls a plugin function, which may not be pure.
        self._key_names = tuple(sorted(names))
        self._memo: dict[tuple[Any, ...], Any] | None = {} if _calls_only_builtins(tree) else None

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expression) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """The expression's value for `context`; any failure is a RuleError naming the rule."""
        if not isinstance(context, FrozenMap):
            # Freezing is part of the evaluation's budget: a huge context fails, not hangs.
            deadline = _thread_time() + MAX_EVALUATION_SECONDS
            return self._walk(self._names(context), deadline)
        data = context._data  # frozen once per check by the caller: read in place
        if not data.keys() >= self.names:
            self._names(context)  # raises the error naming the missing value
        memo = self._memo
        if memo is not None:
            try:
                key = tuple([data[name] for name in self._key_names])
                return memo[key]
            except KeyError:
                pass
            except TypeError:  # a value that cannot be hashed: evaluate without the memo
                memo = None
        # CPU time of this thread: other threads holding the GIL must not fail a rule. A tree
        # with no node of data-dependent cost does not read the clock.
        deadline = _thread_time() + MAX_EVALUATION_SECONDS if self._timed_nodes else 0.0
        value = self._walk(data, deadline)
        if memo is not None:
            if len(memo) >= MAX_MEMO_ENTRIES:
                memo.clear()
            memo[key] = value
        return value

    def _walk(self, names: Mapping[str, Any], deadline: float) -> Any:
        """simpleeval's walk of the parsed tree; any failure is this rule's error."""
        evaluator = _evaluator()
        evaluator.busy = True
        try:
            evaluator.names = names
            evaluator.functions = self._functions
            evaluator.timed_nodes = self._timed_nodes
            evaluator.deadline = deadline
            if self._timed_nodes and _thread_time() > deadline:
                raise BudgetExceeded  # freezing a large context used the budget up
            return evaluator.eval(self.source, previously_parsed=self._tree.body)
        except Exception as error:  # any failure is this rule's error, never the loop's
            reason = _reason(error)
        finally:
            evaluator.busy = False
            evaluator.names = _NO_NAMES  # hold no context between evaluations
        raise self._error(reason)

    def _names(self, context: Mapping[str, Any]) -> dict[Any, Any]:
        """The values the expression reads, frozen (a FrozenMap context is frozen already)."""
        try:
            if isinstance(context, FrozenMap):  # frozen once per check by the caller
                data = context._data  # its own dict: no per-name method call
                return {name: data[name] for name in self.names}
            return {name: freeze(context[name]) for name in self.names}
        except KeyError as error:
            raise self._error(f"the context has no value for {error.args[0]!r}") from None
        except (TypeError, ValueError, RecursionError) as error:
            raise self._error(f"the context cannot be read: {error}") from None

    def _error(self, reason: str) -> RuleError:
        shown = self.source if len(self.source) <= 120 else self.source[:117] + "..."
        return RuleError(
            f"cannot evaluate `{shown}`: {reason}", rule=self.rule, file=self.file, line=self.line
        )


def _calls_only_builtins(tree: ast.Expression) -> bool:
    return all(
        isinstance(node.func, ast.Name) and node.func.id in BUILTIN_FUNCTIONS
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
    )


def _timed_nodes(tree: ast.Expression) -> frozenset[int]:
    """The ids of the nodes whose cost depends on the data, checked against the deadline.

    Function calls, subscripts with a computed key or a slice, and comparisons that may walk a
    sequence. Other nodes do constant or size-bounded work (the operators bound what they
    make), and a tree has no loops, so the work between two checks is bounded by its size.
    """
    timed = set()
    for node in ast.walk(tree):
        computed_key = isinstance(node, ast.Subscript) and not _is_constant(node.slice)
        walking_compare = isinstance(node, ast.Compare) and not _cheap_compare(node)
        if isinstance(node, ast.Call) or computed_key or walking_compare:
            timed.add(id(node))
    return frozenset(timed)


def _cheap_compare(node: ast.Compare) -> bool:
    """True when no comparison of the chain can walk data of unbounded size.

    Identity is cheap; so is an ordering or equality with a constant on either side, and a
    membership test in a constant container. Constants hold only scalars and are bounded by
    the source length.
    """
    operands = (node.left, *node.comparators)
    for index, op in enumerate(node.ops):
        if isinstance(op, ast.Is | ast.IsNot):
            continue
        left, right = _is_constant(operands[index]), _is_constant(operands[index + 1])
        if isinstance(op, ast.In | ast.NotIn):
            if not right:
                return False
        elif not (left or right):
            return False
    return True


def _is_constant(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.UnaryOp):  # -1
        return isinstance(node.operand, ast.Constant)
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return all(isinstance(item, ast.Constant) for item in node.elts)
    return False


def _reason(error: Exception) -> str:
    """What a failed evaluation tells the rule author."""
    if isinstance(error, BudgetExceeded):
        return f"took longer than {MAX_EVALUATION_SECONDS * 1000:g} ms"
    if isinstance(error, FunctionLimitError | InvalidExpression):
        return str(error)
    if isinstance(error, KeyError):
        return f"no key {error.args[0]!r} (use get(mapping, key, default) for optional keys)"
    if isinstance(error, RecursionError):
        return "nested too deeply"
    if isinstance(error, MemoryError):
        return "ran out of memory"
    return f"{type(error).__name__}: {error}"


class BudgetExceeded(Exception):
    """The evaluation ran past its time budget."""


_OPERATORS = {**BINARY_OPERATORS, **UNARY_OPERATORS, **COMPARE_OPERATORS}
_NO_NAMES: Mapping[str, Any] = {}


class _Evaluator(SimpleEval):
    """simpleeval with our own operators and a deadline; one per thread, never shared.

    One evaluator shared across threads gives spurious name errors (PITFALLS.md), and building
    one costs more than a typical evaluation: each thread keeps its own and sets the
    expression's names and functions (simpleeval's public attributes) before each walk.
    """

    def __init__(self) -> None:
        super().__init__(operators=_OPERATORS, functions={}, names={})
        # Sequence literals become tuples: immutable, and bounded by the operator wrappers.
        self.nodes[ast.List] = self._eval_sequence
        self.nodes[ast.Tuple] = self._eval_sequence
        self.nodes[ast.Set] = self._eval_set
        self.deadline = 0.0
        self.timed_nodes: frozenset[int] = frozenset()
        self.busy = False

    def _eval(self, node: ast.AST) -> Any:
        if id(node) in self.timed_nodes and _thread_time() > self.deadline:
            raise BudgetExceeded
        return super()._eval(node)

    def _eval_sequence(self, node: ast.List | ast.Tuple) -> tuple[Any, ...]:
        return tuple([self._eval(item) for item in node.elts])

    def _eval_set(self, node: ast.Set) -> frozenset[Any]:
        return frozenset([self._eval(item) for item in node.elts])


_PER_THREAD = threading.local()


def _evaluator() -> _Evaluator:
    """This thread's evaluator (a new one if it is in use: a function evaluating a rule)."""
    evaluator: _Evaluator | None = getattr(_PER_THREAD, "evaluator", None)
    if evaluator is None or evaluator.busy:
        evaluator = _Evaluator()
        if getattr(_PER_THREAD, "evaluator", None) is None:
            _PER_THREAD.evaluator = evaluator
    return evaluator


def compile_expression(
    source: str,
    *,
    file: str | None = None,
    rule: str | None = None,
    line: int | None = None,
    names: frozenset[str] | None = None,
    functions: Mapping[str, Callable[..., Any]] | None = None,
) -> Expression:
    """Parse and check `source` once; raise RuleError (with the column) for anything refused.

    `names` are the names the expression may read (default: the rule context); `functions` are
    extra functions (from plugins) added to the built-in ones.
    """
    allowed_names = CONTEXT_NAME_SET if names is None else names
    table = _function_table(functions)

    def fail(message: str, column: int | None = None) -> RuleError:
        return RuleError(message, rule=rule, file=file, line=line, column=column)

    if not isinstance(source, str):
        raise fail(f"an expression must be a string, not {type(source).__name__}")
    if len(source) > MAX_EXPRESSION_CHARS:
        raise fail(
            f"expression is {len(source)} characters long; the limit is {MAX_EXPRESSION_CHARS}"
        )
    if not source.strip():
        raise fail("expression is empty")
    tree = _parse(source, fail)
    indent = _indent(source)

    def fail_at(message: str, column: int | None = None) -> RuleError:
        return fail(message, None if column is None else column + indent)

    used = _check_tree(tree, allowed_names, table, fail_at)
    return Expression(source, tree, used, table, rule=rule, file=file, line=line)


def _function_table(
    extra: Mapping[str, Callable[..., Any]] | None,
) -> Mapping[str, Callable[..., Any]]:
    table = dict(BUILTIN_FUNCTIONS)
    for name, function in (extra or {}).items():
        if not name.isidentifier() or name.startswith("_"):
            raise RuleError(f"plugin function name {name!r} is not a plain identifier")
        if not callable(function):
            raise RuleError(f"plugin function {name!r} is not callable")
        table[name] = _plugin_wrapper(name, function)
    return table


def _plugin_wrapper(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """A plugin function sees frozen arguments and its result is frozen too (plain data only).

    It runs on a thread of its own with a wall-clock limit: the evaluation's CPU-time budget
    cannot see a function that sleeps or waits, nor stop one that computes in C.
    """

    def call(*args: Any) -> Any:
        ran = call_in_thread(
            lambda: function(*args), name=f"rule function {name}", timeout=PLUGIN_FUNCTION_SECONDS
        )
        if ran.timed_out:
            limit = f"{PLUGIN_FUNCTION_SECONDS * 1000:g} ms"
            raise FunctionLimitError(f"function {name}() did not return within {limit}")
        if isinstance(ran.error, TypeError | ValueError):
            raise FunctionLimitError(f"function {name}() failed: {ran.error}") from None
        if ran.error is not None:
            raise ran.error
        return freeze(ran.value)

    call.__name__ = name
    return call


def _parse(source: str, fail: Callable[[str, int | None], RuleError]) -> ast.Expression:
    try:
        # Warnings (an invalid escape such as '\d' outside a raw string) are errors here: they
        # become syntax errors in later Python versions.
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return ast.parse(source.strip(), mode="eval")
    except (SyntaxWarning, DeprecationWarning) as error:
        raise fail(f"{error} (write regular expressions as raw strings: r'...')", None) from None
    except SyntaxError as error:
        # Python reports offset 0 for "unexpected end"; point just past the text then.
        column = error.offset if error.offset else len(source.strip()) + 1
        hint = (
            " (write regular expressions as raw strings: r'...')" if "escape" in error.msg else ""
        )
        raise fail(f"syntax error: {error.msg}{hint}", column + _indent(source)) from None
    except (RecursionError, MemoryError):
        raise fail("expression is nested too deeply to parse", None) from None
    except ValueError as error:  # e.g. a NUL byte in the source
        raise fail(f"syntax error: {error}", None) from None


def _indent(source: str) -> int:
    """Leading blanks stripped before parsing, added back to reported columns."""
    return len(source) - len(source.lstrip())


def _check_tree(
    tree: ast.Expression,
    names: frozenset[str],
    functions: Mapping[str, Callable[..., Any]],
    fail: Callable[[str, int | None], RuleError],
) -> frozenset[str]:
    """Walk the tree without recursion (it may be deep); return the context names it reads."""
    used: set[str] = set()
    call_targets = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        column = _column(node)
        if depth > MAX_NESTING_DEPTH:
            raise fail(f"expression is nested deeper than {MAX_NESTING_DEPTH} levels", column)
        _check_node(node, names, functions, id(node) in call_targets, fail)
        if isinstance(node, ast.Name) and id(node) not in call_targets:
            used.add(node.id)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return frozenset(used)


def _column(node: ast.AST) -> int | None:
    offset = getattr(node, "col_offset", None)
    return offset + 1 if isinstance(offset, int) else None


def _check_node(
    node: ast.AST,
    names: frozenset[str],
    functions: Mapping[str, Callable[..., Any]],
    is_call_target: bool,
    fail: Callable[[str, int | None], RuleError],
) -> None:
    column = _column(node)
    if not isinstance(node, _ALLOWED_NODES):
        reason = _REFUSALS.get(type(node), f"`{type(node).__name__}` is not allowed")
        raise fail(reason, column)
    if isinstance(node, ast.Constant) and not isinstance(node.value, _CONSTANT_TYPES):
        raise fail(f"a {type(node.value).__name__} literal is not allowed", column)
    if isinstance(node, ast.Name):
        _check_name(node.id, names, functions, is_call_target, fail, column)
    if isinstance(node, ast.Call):
        _check_call(node, functions, fail, column)


def _check_name(
    name: str,
    names: frozenset[str],
    functions: Mapping[str, Callable[..., Any]],
    is_call_target: bool,
    fail: Callable[[str, int | None], RuleError],
    column: int | None,
) -> None:
    if name.startswith("_"):
        raise fail(f"names starting with '_' are not allowed: {name!r}", column)
    if is_call_target:
        if name in functions:
            return
        if name in names:
            raise fail(f"{name!r} is a value, not a function; it cannot be called", column)
        raise fail(f"unknown function {name!r}{_suggest(name, functions)}", column)
    if name in names:
        return
    if name in functions:
        raise fail(f"function {name!r} must be called, e.g. {name}(...)", column)
    raise fail(f"unknown name {name!r}{_suggest(name, [*names, *functions])}", column)


def _suggest(name: str, candidates: Any) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _check_call(
    node: ast.Call,
    functions: Mapping[str, Callable[..., Any]],
    fail: Callable[[str, int | None], RuleError],
    column: int | None,
) -> None:
    if isinstance(node.func, ast.Attribute):
        raise fail("method calls are not allowed (attribute access); use the functions", column)
    if not isinstance(node.func, ast.Name):
        raise fail("only the documented functions may be called, by name", column)
    if node.keywords:
        raise fail(_REFUSALS[ast.keyword], column)
    # A constant pattern is checked now, so a dangerous regex is a load error, not a step error.
    if node.func.id != "matches" or len(node.args) != 2:
        return
    pattern = node.args[1]
    if isinstance(pattern, ast.Constant) and isinstance(pattern.value, str):
        try:
            check_pattern(pattern.value)
        except ValueError as error:
            raise fail(f"matches(): {error}", _column(pattern)) from None
