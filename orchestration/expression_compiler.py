"""Turn a checked expression tree into a tree of Python closures, evaluated without a tree walk."""

from __future__ import annotations

import ast
import operator
import time
from collections.abc import Callable, Mapping
from typing import Any

from orchestration.expression_limits import BINARY_OPERATORS, COMPARE_OPERATORS, UNARY_OPERATORS

# A compiled node: takes the evaluation's names (plus its deadline under DEADLINE) and returns
# the node's value. Closures hold only compile-time data, so one tree serves every thread.
Node = Callable[[dict[Any, Any]], Any]

# The key under which an evaluation stores its deadline (thread CPU seconds) in its names dict.
# Not a string, so no expression name can ever read or shadow it.
DEADLINE: Any = object()

_thread_time = time.thread_time


class BudgetExceeded(Exception):
    """The evaluation ran past its time budget."""


class UnsupportedNode(Exception):
    """The tree holds a node the compiler does not know (the checker should have refused it)."""


def compile_tree(tree: ast.Expression, functions: Mapping[str, Callable[..., Any]]) -> Node:
    """The closure tree for a tree already checked by the expression checker.

    Operators and functions are exactly those of the tables in expression_limits (and the
    expression's function table), called the way simpleeval calls them. The deadline is checked
    before every function call, every comparison that may walk a sequence and every subscript
    with a computed key or a slice: the nodes whose cost depends on the data. Other nodes do constant or size-bounded work, and
    a tree has no loops, so the work between two checks is bounded by the tree's size.
    """
    return _Compiler(functions).node(tree.body)


def _check_deadline(names: dict[Any, Any]) -> None:
    if _thread_time() > names[DEADLINE]:
        raise BudgetExceeded


class _Compiler:
    """One compilation: maps each AST node type to the closure that evaluates it."""

    def __init__(self, functions: Mapping[str, Callable[..., Any]]) -> None:
        self.functions = functions

    def node(self, node: ast.AST) -> Node:
        method = _DISPATCH.get(type(node))
        if method is None:
            raise UnsupportedNode(type(node).__name__)
        return method(self, node)

    # ---- leaves ----

    def constant(self, node: ast.Constant) -> Node:
        return _constant(node.value)

    def name(self, node: ast.Name) -> Node:
        return operator.itemgetter(node.id)

    # ---- literals: lists and tuples become tuples, sets frozensets ----

    def sequence(self, node: ast.List | ast.Tuple) -> Node:
        items = tuple(self.node(item) for item in node.elts)
        folded = _fold(node.elts)
        if folded is not None:
            return _constant(tuple(folded))
        return lambda names: tuple([item(names) for item in items])

    def set(self, node: ast.Set) -> Node:
        items = tuple(self.node(item) for item in node.elts)
        folded = _fold(node.elts)
        if folded is not None:
            return _constant(frozenset(folded))
        return lambda names: frozenset([item(names) for item in items])

    # ---- operators ----

    def unary(self, node: ast.UnaryOp) -> Node:
        function = UNARY_OPERATORS[type(node.op)]
        operand = self.node(node.operand)
        if isinstance(node.operand, ast.Constant) and isinstance(node.op, ast.USub | ast.UAdd):
            value = node.operand.value
            if type(value) in (int, float):  # -1, +2.5: fold, they cannot fail
                return _constant(function(value))
        if function is operator.not_:
            return lambda names: not operand(names)
        return lambda names: function(operand(names))

    def binary(self, node: ast.BinOp) -> Node:
        function = BINARY_OPERATORS[type(node.op)]
        left = self.node(node.left)
        right = self.node(node.right)
        return lambda names: function(left(names), right(names))

    def boolean(self, node: ast.BoolOp) -> Node:
        values = tuple(self.node(value) for value in node.values)
        if isinstance(node.op, ast.And):
            if len(values) == 2:
                first, second = values
                return lambda names: first(names) and second(names)

            def all_of(names: dict[Any, Any]) -> Any:
                result: Any = False
                for value in values:
                    result = value(names)
                    if not result:
                        break
                return result

            return all_of
        if len(values) == 2:
            first, second = values
            return lambda names: first(names) or second(names)

        def any_of(names: dict[Any, Any]) -> Any:
            result: Any = False
            for value in values:
                result = value(names)
                if result:
                    break
            return result

        return any_of

    def compare(self, node: ast.Compare) -> Node:
        left = self.node(node.left)
        functions = tuple(COMPARE_OPERATORS[type(op)] for op in node.ops)
        comparators = tuple(self.node(comparator) for comparator in node.comparators)
        checked = not _cheap_compare(node)
        if len(functions) == 1:
            function = functions[0]
            right = comparators[0]
            if checked:

                def checked_compare(names: dict[Any, Any]) -> Any:
                    if _thread_time() > names[DEADLINE]:
                        raise BudgetExceeded
                    return function(left(names), right(names))

                return checked_compare
            if isinstance(node.comparators[0], ast.Constant):
                constant = node.comparators[0].value
                return lambda names: function(left(names), constant)
            return lambda names: function(left(names), right(names))
        pairs = tuple(zip(functions, comparators, strict=True))

        def chain(names: dict[Any, Any]) -> Any:
            if checked:
                _check_deadline(names)
            right = left(names)
            result: Any = True
            for function, comparator in pairs:
                left_value, right = right, comparator(names)
                result = function(left_value, right)
                if not result:
                    break
            return result

        return chain

    def if_expression(self, node: ast.IfExp) -> Node:
        test = self.node(node.test)
        body = self.node(node.body)
        orelse = self.node(node.orelse)
        return lambda names: body(names) if test(names) else orelse(names)

    # ---- calls and subscripts: the deadline is checked before each ----

    def call(self, node: ast.Call) -> Node:
        if not isinstance(node.func, ast.Name) or node.keywords:
            raise UnsupportedNode("Call")
        function = self.functions[node.func.id]
        arguments = tuple(self.node(argument) for argument in node.args)
        if len(arguments) == 1:
            (only,) = arguments

            def call_one(names: dict[Any, Any]) -> Any:
                if _thread_time() > names[DEADLINE]:
                    raise BudgetExceeded
                return function(only(names))

            return call_one
        if len(arguments) == 2:
            first, second = arguments

            def call_two(names: dict[Any, Any]) -> Any:
                if _thread_time() > names[DEADLINE]:
                    raise BudgetExceeded
                return function(first(names), second(names))

            return call_two

        def call_many(names: dict[Any, Any]) -> Any:
            if _thread_time() > names[DEADLINE]:
                raise BudgetExceeded
            return function(*[argument(names) for argument in arguments])

        return call_many

    def subscript(self, node: ast.Subscript) -> Node:
        container = self.node(node.value)
        key = self.node(node.slice)
        if isinstance(node.slice, ast.Constant):  # an index or key: no walk over the data
            constant = node.slice.value
            return lambda names: container(names)[constant]

        def item(names: dict[Any, Any]) -> Any:
            if _thread_time() > names[DEADLINE]:
                raise BudgetExceeded
            return container(names)[key(names)]

        return item

    def slice(self, node: ast.Slice) -> Node:
        lower, upper, step = (
            _constant(None) if part is None else self.node(part)
            for part in (node.lower, node.upper, node.step)
        )
        return lambda names: slice(lower(names), upper(names), step(names))


def _constant(value: Any) -> Node:
    return lambda names: value


def _fold(items: list[ast.expr]) -> list[Any] | None:
    """The values of literal items when every one is a constant, else None."""
    if all(isinstance(item, ast.Constant) for item in items):
        return [item.value for item in items if isinstance(item, ast.Constant)]
    return None


# Comparisons whose cost cannot depend on the data's size: identity, or an ordering/equality
# test against a constant (all constants are scalars; a string constant is bounded by the source
# length, and comparing a sequence or mapping to a scalar returns at once).
_SCALAR_ORDERINGS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)


def _cheap_compare(node: ast.Compare) -> bool:
    operands = [node.left, *node.comparators]
    for index, op in enumerate(node.ops):
        if isinstance(op, ast.Is | ast.IsNot):
            continue
        pair = operands[index], operands[index + 1]
        against_constant = any(isinstance(side, ast.Constant) for side in pair)
        if not (isinstance(op, _SCALAR_ORDERINGS) and against_constant):
            return False
    return True


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
