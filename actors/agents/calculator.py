"""The ``calculator`` agent and the safe arithmetic evaluator it shares with ``openai``.

The agent finds the arithmetic in the last user message ("What is 2+2?",
"compute (3 + 4) * 2", "7 divided by 2"), evaluates it through a ``calculate`` tool
call, and answers in words:

    ToolCall(call_id, "calculate", {"expression": "2+2"})
    ToolResult(call_id, "calculate", "4")
    TextDelta("2+2 "), TextDelta("equals "), TextDelta("4.")

An expression it cannot evaluate gives an error :class:`ToolResult` and a sentence
saying so, never an exception. A message with no arithmetic at all gets a sentence and
no tool call.

The evaluator never calls ``eval``: it parses with :func:`ast.parse` and walks the tree,
allowing only numbers, ``+ - * / // % **``, unary ``+``/``-`` and parentheses. It bounds
the expression's length and the size of every intermediate integer, so ``9**9**9``
is refused at once instead of eating the CPU.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from actors.agents.base import (
    AgentOutput,
    AgentSettings,
    AgentSpec,
    TextDelta,
    ToolCall,
    ToolResult,
    TurnInput,
    last_user_text,
    split_words,
)

MAX_EXPRESSION_CHARS = 200
MAX_INT_BITS = 4096  # about 1,233 decimal digits

TOOL_NAME = "calculate"
TOOL_DESCRIPTION = (
    "Evaluate an arithmetic expression exactly. Supports numbers, + - * / // % ** "
    "unary minus and parentheses."
)
TOOL_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "expression": {
            "type": "string",
            "description": "The arithmetic expression, e.g. '(3 + 4) * 2'.",
        }
    },
    "required": ["expression"],
}


class CalculationError(ValueError):
    """An expression the evaluator refuses; the message says why, as a clause."""


Number = int | float


def _pow(a: Number, b: Number) -> Number:
    int_power = isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1
    if int_power and b * math.log2(abs(a)) > MAX_INT_BITS:
        raise CalculationError("the result would be too large")
    return a**b


def _mul(a: Number, b: Number) -> Number:
    both_int = isinstance(a, int) and isinstance(b, int)
    if both_int and a.bit_length() + b.bit_length() > MAX_INT_BITS + 1:
        raise CalculationError("the result would be too large")
    return a * b


_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: _mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: _pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


def _checked(value: Any) -> Number:
    if isinstance(value, complex):
        raise CalculationError("the result is not a real number")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculationError("the result is too large")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise CalculationError("the result is too large")
    return value


def _evaluate(node: ast.AST) -> Number:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise CalculationError("only numbers are allowed")
        return _checked(node.value)
    if isinstance(node, ast.BinOp):
        binary = _BINARY.get(type(node.op))
        if binary is None:
            raise CalculationError("only + - * / // % ** are allowed")
        return _checked(binary(_evaluate(node.left), _evaluate(node.right)))
    if isinstance(node, ast.UnaryOp):
        unary = _UNARY.get(type(node.op))
        if unary is None:
            raise CalculationError("only unary + and - are allowed")
        return _checked(unary(_evaluate(node.operand)))
    raise CalculationError("only numbers, operators and parentheses are allowed")


def safe_eval(expression: str) -> Number:
    """Evaluate an arithmetic expression without ``eval``.

    Raises:
        CalculationError: the expression is too long, not arithmetic, divides by zero,
            or its result (or an intermediate) is too large or not real.
    """
    if not isinstance(expression, str) or not expression.strip():
        raise CalculationError("the expression is empty")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculationError(f"the expression is longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        raise CalculationError("it is not valid arithmetic") from None
    try:
        return _evaluate(tree)
    except ZeroDivisionError:
        raise CalculationError("division by zero") from None
    except OverflowError:
        raise CalculationError("the result is too large") from None
    except RecursionError:
        raise CalculationError("the expression is nested too deeply") from None


def format_number(value: Number) -> str:
    """Write a result the way a person would: ``4`` not ``4.0``, ``0.333333333333``."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        return f"{value:.12g}"
    return str(value)


def calculate(expression: str) -> str:
    """The ``calculate`` tool: the formatted value of ``expression``.

    Raises:
        CalculationError: see :func:`safe_eval`.
    """
    return format_number(safe_eval(expression))


# --- finding the arithmetic in a sentence -------------------------------------------------

_WORD_OPERATORS = [
    (re.compile(r"\bto the power of\b", re.I), " ** "),
    (re.compile(r"\bmultiplied by\b", re.I), " * "),
    (re.compile(r"\bdivided by\b", re.I), " / "),
    (re.compile(r"\bplus\b", re.I), " + "),
    (re.compile(r"\bminus\b", re.I), " - "),
    (re.compile(r"\btimes\b", re.I), " * "),
    (re.compile(r"\b(?:mod|modulo)\b", re.I), " % "),
]
# ^, the multiplication sign, the division sign and the minus sign.
_SYMBOLS = str.maketrans({"^": "**", "\u00d7": "*", "\u00f7": "/", "\u2212": "-"})
_CANDIDATE = re.compile(r"[0-9.\s+\-*/%()]+")
_BINARY_OPERATOR = re.compile(r"[\d.)]\s*[+\-*/%]")


def _trim_parentheses(text: str) -> str:
    while text.endswith(")") and text.count(")") > text.count("("):
        text = text[:-1].rstrip()
    while text.startswith("(") and text.count("(") > text.count(")"):
        text = text[1:].lstrip()
    return text


def extract_expression(message: str) -> str | None:
    """The arithmetic in a sentence, or ``None`` when it holds no number.

    Operator words (``plus``, ``minus``, ``times``, ``multiplied by``, ``divided by``,
    ``mod``, ``to the power of``), ``^`` and the multiplication, division and minus signs
    are turned into Python operators first. Of the runs of digits, operators and
    parentheses, the longest that has an operator wins, else the longest number.
    """
    text = message.translate(_SYMBOLS)
    for pattern, replacement in _WORD_OPERATORS:
        text = pattern.sub(replacement, text)
    candidates = []
    for match in _CANDIDATE.finditer(text):
        candidate = " ".join(match.group().split()).rstrip(". ")
        candidate = _trim_parentheses(candidate)
        if any(c.isdigit() for c in candidate):
            candidates.append(candidate)
    if not candidates:
        return None
    with_operator = [c for c in candidates if _BINARY_OPERATOR.search(c)]
    return max(with_operator or candidates, key=len)


class CalculatorAgent:
    """Answers arithmetic questions through the ``calculate`` tool."""

    def __init__(self, spec: AgentSpec, settings: AgentSettings | None = None) -> None:
        self.spec = spec

    async def stream(self, turn: TurnInput) -> AsyncIterator[AgentOutput]:
        """Yield the tool call, its result, then the answer word by word."""
        expression = extract_expression(last_user_text(turn.messages))
        if expression is None:
            answer = "I could not find any arithmetic to compute in your message."
        else:
            call_id = f"call_{turn.turn_id}_calculate"
            yield ToolCall(call_id, TOOL_NAME, {"expression": expression})
            try:
                result = calculate(expression)
            except CalculationError as e:
                yield ToolResult(call_id, TOOL_NAME, str(e), is_error=True)
                answer = f"I cannot compute {expression}: {e}."
            else:
                yield ToolResult(call_id, TOOL_NAME, result)
                answer = f"{expression} equals {result}."
        for word in split_words(answer):
            yield TextDelta(word)


def create_calculator_agent(spec: AgentSpec, settings: AgentSettings) -> CalculatorAgent:
    """The ``calculator`` factory."""
    return CalculatorAgent(spec, settings)
