"""Turn a checked expression tree into a tree of Python closures, evaluated without a tree walk."""

from __future__ import annotations

import ast
import operator
import time
from collections.abc import Callable, Mapping
from typing import Any

from orchestration.expression_limits import BINARY_OPERATORS, COMPARE_OPERATORS, UNARY_OPERATORS

# A compiled node: takes the evaluation's names (frozen values, every name the expression reads)
# and its deadline (in `time.thread_time` seconds), returns the node's value. Closures hold only
# compile-time data, so one tree serves every thread at once.
Node = Callable[[Mapping[str, Any], float], Any]

_thread_time = time.thread_time


class BudgetExceeded(Exception):
    """The evaluation ran past its time budget."""


class UnsupportedNode(Exception):
    """The tree holds a node the compiler does not know (the checker should have refused it)."""


def compile_tree(
    tree: ast.Expression, functions: Mapping[str, Callable[..., Any]]
) -> tuple[Node, bool]:
    """The closure tree for a tree already checked by the expression checker, and whether it
    reads the deadline at all (when not, the caller need not read the clock).

    Operators and functions are exactly those of the tables in expression_limits (and the
    expression's function table), called the way simpleeval calls them. The deadline is checked
    before every function call, every comparison that may walk a sequence and every subscript
    with a computed key or a slice: the nodes whose cost depends on the data. Other nodes do
    constant or size-bounded work, and a tree has no loops, so the work between two checks is
    bounded by the tree's size.
    """
    compiler = _Compiler(functions)
    return compiler.node(tree.body), compiler.timed


class _Compiler:
    """One compilation: maps each AST node type to the closure that evaluates it."""

    def __init__(self, functions: Mapping[str, Callable[..., Any]]) -> None:
        self.functions = functions
        # Closures that return a value known at compile time, by id (the closure is kept too,
        # so an id cannot be reused while the compilation runs).
        self.known: dict[int, tuple[Node, Any]] = {}
        self.timed = False  # some closure checks the deadline

    def constant_of(self, compiled: Node) -> tuple[bool, Any]:
        """(True, value) when `compiled` always returns `value`, else (False, None)."""
        entry = self.known.get(id(compiled))
        return (True, entry[1]) if entry is not None else (False, None)

    def constant_node(self, value: Any) -> Node:
        compiled = _constant(value)
        self.known[id(compiled)] = (compiled, value)
        return compiled

    def node(self, node: ast.AST) -> Node:
        method = _DISPATCH.get(type(node))
        if method is None:
            raise UnsupportedNode(type(node).__name__)
        return method(self, node)

    # ---- leaves ----

    def constant(self, node: ast.Constant) -> Node:
        return self.constant_node(node.value)

    def name(self, node: ast.Name) -> Node:
        key = node.id
        return lambda names, deadline: names[key]

    # ---- literals: lists and tuples become tuples, sets frozensets ----

    def sequence(self, node: ast.List | ast.Tuple) -> Node:
        items = tuple(self.node(item) for item in node.elts)
        if all(isinstance(item, ast.Constant) for item in node.elts):
            return self.constant_node(tuple(item(_NO_NAMES, 0.0) for item in items))
        return lambda names, deadline: tuple([item(names, deadline) for item in items])

    def set(self, node: ast.Set) -> Node:
        items = tuple(self.node(item) for item in node.elts)
        if all(isinstance(item, ast.Constant) for item in node.elts):
            return self.constant_node(frozenset(item(_NO_NAMES, 0.0) for item in items))
        return lambda names, deadline: frozenset([item(names, deadline) for item in items])

    # ---- operators ----

    def unary(self, node: ast.UnaryOp) -> Node:
        function = UNARY_OPERATORS[type(node.op)]
        operand = self.node(node.operand)
        folded = self.fold(function, operand)
        if folded is not None:
            return folded
        if function is operator.not_:
            return lambda names, deadline: not operand(names, deadline)
        return lambda names, deadline: function(operand(names, deadline))

    def binary(self, node: ast.BinOp) -> Node:
        function = BINARY_OPERATORS[type(node.op)]
        left = self.node(node.left)
        right = self.node(node.right)
        folded = self.fold(function, left, right)
        if folded is not None:
            return folded
        return lambda names, deadline: function(left(names, deadline), right(names, deadline))

    def fold(self, function: Callable[..., Any], *operands: Node) -> Node | None:
        """A constant for arithmetic on numeric constants (`4 * 3600`, `-1`), else None.

        Only numbers are folded, so no large string or tuple is kept with the expression; an
        operation that fails (`1 / 0`) is left to fail at evaluation, as it always did.
        """
        values = []
        for operand in operands:
            known, value = self.constant_of(operand)
            if not known or type(value) not in (int, float):
                return None
            values.append(value)
        try:
            result = function(*values)
        except Exception:  # the same error is raised, and reported, at evaluation
            return None
        return self.constant_node(result) if type(result) in (int, float) else None

    def boolean(self, node: ast.BoolOp) -> Node:
        values = tuple(self.node(value) for value in node.values)
        if isinstance(node.op, ast.And):
            if len(values) == 2:
                first, second = values
                return lambda names, deadline: first(names, deadline) and second(names, deadline)

            def all_of(names: Mapping[str, Any], deadline: float) -> Any:
                result: Any = False
                for value in values:
                    result = value(names, deadline)
                    if not result:
                        break
                return result

            return all_of
        if len(values) == 2:
            first, second = values
            return lambda names, deadline: first(names, deadline) or second(names, deadline)

        def any_of(names: Mapping[str, Any], deadline: float) -> Any:
            result: Any = False
            for value in values:
                result = value(names, deadline)
                if result:
                    break
            return result

        return any_of

    def compare(self, node: ast.Compare) -> Node:
        left = self.node(node.left)
        functions = tuple(COMPARE_OPERATORS[type(op)] for op in node.ops)
        comparators = tuple(self.node(comparator) for comparator in node.comparators)
        checked = not self.cheap_compare(node.ops, (left, *comparators))
        self.timed = self.timed or checked
        if len(functions) == 1:
            function = functions[0]
            right = comparators[0]
            if checked:

                def checked_compare(names: Mapping[str, Any], deadline: float) -> Any:
                    if _thread_time() > deadline:
                        raise BudgetExceeded
                    return function(left(names, deadline), right(names, deadline))

                return checked_compare
            known, constant = self.constant_of(right)
            if known:
                return lambda names, deadline: function(left(names, deadline), constant)
            return lambda names, deadline: function(left(names, deadline), right(names, deadline))
        pairs = tuple(zip(functions, comparators, strict=True))

        def chain(names: Mapping[str, Any], deadline: float) -> Any:
            if checked and _thread_time() > deadline:
                raise BudgetExceeded
            right = left(names, deadline)
            result: Any = True
            for function, comparator in pairs:
                left_value, right = right, comparator(names, deadline)
                result = function(left_value, right)
                if not result:
                    break
            return result

        return chain

    def cheap_compare(self, ops: list[ast.cmpop], operands: tuple[Node, ...]) -> bool:
        """True when no comparison of the chain can walk data of unbounded size.

        Identity is cheap; so is an ordering or equality with a constant on either side, and a
        membership test in a constant container. Constants hold only scalars and a string
        constant is bounded by the source length, so each of these is bounded by the source.
        """
        for index, op in enumerate(ops):
            if isinstance(op, ast.Is | ast.IsNot):
                continue
            left_known = self.constant_of(operands[index])[0]
            right_known = self.constant_of(operands[index + 1])[0]
            if isinstance(op, ast.In | ast.NotIn):
                if not right_known:
                    return False
            elif not (left_known or right_known):
                return False
        return True

    def if_expression(self, node: ast.IfExp) -> Node:
        test = self.node(node.test)
        body = self.node(node.body)
        orelse = self.node(node.orelse)
        return lambda names, deadline: (
            body(names, deadline) if test(names, deadline) else orelse(names, deadline)
        )

    # ---- calls and subscripts: the deadline is checked before each ----

    def call(self, node: ast.Call) -> Node:
        if not isinstance(node.func, ast.Name) or node.keywords:
            raise UnsupportedNode("Call")
        function = self.functions[node.func.id]
        arguments = tuple(self.node(argument) for argument in node.args)
        self.timed = True
        if len(arguments) == 1:
            (only,) = arguments

            def call_one(names: Mapping[str, Any], deadline: float) -> Any:
                if _thread_time() > deadline:
                    raise BudgetExceeded
                return function(only(names, deadline))

            return call_one
        if len(arguments) == 2:
            first, second = arguments

            def call_two(names: Mapping[str, Any], deadline: float) -> Any:
                if _thread_time() > deadline:
                    raise BudgetExceeded
                return function(first(names, deadline), second(names, deadline))

            return call_two

        def call_many(names: Mapping[str, Any], deadline: float) -> Any:
            if _thread_time() > deadline:
                raise BudgetExceeded
            return function(*[argument(names, deadline) for argument in arguments])

        return call_many

    def subscript(self, node: ast.Subscript) -> Node:
        container = self.node(node.value)
        key = self.node(node.slice)
        known, constant = self.constant_of(key)
        if known:  # an index or key: no walk over the data
            return lambda names, deadline: container(names, deadline)[constant]
        self.timed = True

        def item(names: Mapping[str, Any], deadline: float) -> Any:
            if _thread_time() > deadline:
                raise BudgetExceeded
            return container(names, deadline)[key(names, deadline)]

        return item

    def slice(self, node: ast.Slice) -> Node:
        lower, upper, step = (
            _constant(None) if part is None else self.node(part)
            for part in (node.lower, node.upper, node.step)
        )
        return lambda names, deadline: slice(
            lower(names, deadline), upper(names, deadline), step(names, deadline)
        )


def _constant(value: Any) -> Node:
    return lambda names, deadline: value


_NO_NAMES: Mapping[str, Any] = {}


_DISPATCH: dict[type[ast.AST], Callable[[_Compiler, Any], Node]] = {
    ast.Constant: _Compiler.constant,
    ast.Name: _Compiler.name,
    ast.List: _Compiler.sequence,
    ast.Tuple: _Compiler.sequence,
    ast.Set: _Compiler.set,
    ast.UnaryOp: _Compiler.unary,
    ast.BinOp: _Compiler.binary,
    ast.BoolOp: _Compiler.boolean,
    ast.Compare: _Compiler.compare,
    ast.IfExp: _Compiler.if_expression,
    ast.Call: _Compiler.call,
    ast.Subscript: _Compiler.subscript,
    ast.Slice: _Compiler.slice,
}
