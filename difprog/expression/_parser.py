"""The parser: tokens to a postfix program, every refusal raised before evaluation."""

from __future__ import annotations

from typing import Any

from difprog import gates
from difprog.errors import ArgumentError
from difprog.expression._evaluate import CONSTANTS, FUNCTIONS
from difprog.expression._limits import MAX_DEPTH, MAX_NODES, MAX_VECTOR
from difprog.expression._text import Token, refuse, shown, small_int


class Parser:
    """Recursive descent over the token list, emitting a postfix program.

    The program is a list of instructions: ('constant', value), ('variable', name),
    ('negate',), ('binary', op), ('call', name, n_positional, keywords), ('vector', n).
    Recursion only happens through nesting, which is bounded by MAX_DEPTH.
    """

    def __init__(self, expression: str, tokens: list[Token], names: list[str]):
        self.expression, self.tokens, self.names = expression, tokens, set(names)
        self.i, self.depth = 0, 0
        self.program: list[tuple] = []
        self.used: set[str] = set()
        self.missing: list[str] = []

    def parse(self) -> list[tuple]:
        """The whole expression as a postfix program."""
        self.expression_()
        if self.peek().kind != "end":
            raise self.unexpected(self.peek())
        if len(self.program) > MAX_NODES:
            raise ArgumentError(f"{shown(self.expression)} has {len(self.program):,} nodes "
                                f"(numbers, variables, operations and calls); the limit is "
                                f"{MAX_NODES:,}: write a shorter expression")
        return self.program

    def peek(self, ahead: int = 0) -> Token:
        """The next token (or the one `ahead` after it) without taking it."""
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def take(self) -> Token:
        """The next token, taken."""
        token = self.peek()
        self.i += 1
        return token

    def at(self, *texts: str) -> bool:
        """Whether the next token is one of the operators `texts`."""
        token = self.peek()
        return token.kind == "op" and token.text in texts

    def expect(self, text: str, purpose: str) -> None:
        """Takes the operator `text`, or refuses saying what it was for."""
        token = self.peek()
        if not self.at(text):
            got = "the end" if token.kind == "end" else repr(token.text)
            raise refuse(self.expression, token.position, f"expected {text!r} {purpose}, "
                                                           f"got {got}")
        self.take()

    def enter(self, token: Token) -> None:
        """One level deeper, refused beyond MAX_DEPTH."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise refuse(self.expression, token.position,
                          f"nested more than {MAX_DEPTH} levels deep (brackets, calls, signs "
                          f"and powers each count); write a flatter expression")

    def unexpected(self, token: Token) -> ArgumentError:
        """The error for a token that cannot come where it is."""
        reasons = {
            "end": "the expression ends too early",
            "[": "subscripts (x[...]) are not supported; use sum, mean or max over axes",
            "(": "only the functions can be called",
            ")": "')' has no matching '('",
            "]": "']' has no matching '['",
            "=": "'=' only gives keyword arguments, as in leaky_relu(x, negative_slope=0.2)",
        }
        if token.kind == "end":
            reason = reasons["end"]
        elif token.kind in ("name", "number"):
            reason = f"missing an operator such as + or * before {token.text!r}"
        else:
            reason = reasons.get(token.text, f"unexpected {token.text!r}")
        return refuse(self.expression, token.position, reason)

    def expression_(self) -> None:
        """expression := term (('+' | '-') term)*"""
        self.term()
        while self.at("+", "-"):
            op = self.take().text
            self.term()
            self.program.append(("binary", op))

    def term(self) -> None:
        """term := unary (('*' | '/') unary)*"""
        self.unary()
        while self.at("*", "/"):
            op = self.take().text
            self.unary()
            self.program.append(("binary", op))

    def unary(self) -> None:
        """unary := ('-' | '+') unary | power"""
        if not self.at("-", "+"):
            self.power()
            return
        sign = self.take()
        self.enter(sign)
        self.unary()
        self.depth -= 1
        if sign.text == "-":
            self.program.append(("negate",))

    def power(self) -> None:
        """power := atom ['**' unary]"""
        self.atom()
        if self.at("**"):
            op = self.take()
            self.enter(op)
            self.unary()
            self.depth -= 1
            self.program.append(("binary", "**"))

    def atom(self) -> None:
        """atom := number | name | call | '(' expression ')' | vector"""
        token = self.take()
        if token.kind == "number":
            self.program.append(("constant", token.value))
        elif token.kind == "name" and self.at("("):
            self.call(token)
        elif token.kind == "name":
            self.name(token)
        elif token.text == "(" and token.kind == "op":
            self.enter(token)
            self.expression_()
            self.expect(")", f"to close the '(' at character {token.position + 1}")
            self.depth -= 1
        elif token.text == "[" and token.kind == "op":
            self.enter(token)
            self.vector(token)
            self.depth -= 1
        else:
            self.i -= 1
            raise self.unexpected(token)
        if self.at("(", "["):
            raise self.unexpected(self.peek())

    def name(self, token: Token) -> None:
        """A variable, a constant, or (refused) a function that is not called."""
        name = token.text
        if name in self.names:
            self.used.add(name)
            self.program.append(("variable", name))
        elif name in CONSTANTS:
            self.program.append(("constant", CONSTANTS[name]))
        elif name in FUNCTIONS:
            raise refuse(self.expression, token.position,
                          f"{name} is a function: call it, as in {name}(x)")
        else:
            if name not in self.missing:
                self.missing.append(name)
            self.program.append(("variable", name))

    def vector(self, open_: Token) -> None:
        """vector := '[' expression (',' expression)* [','] ']'"""
        if self.at("]"):
            raise refuse(self.expression, open_.position, "an empty vector [] has no "
                                                            "elements; give at least one")
        count = 0
        while True:
            self.expression_()
            count += 1
            if count > MAX_VECTOR:
                raise refuse(self.expression, open_.position,
                              f"a vector of more than {MAX_VECTOR:,} items; the limit is "
                              f"{MAX_VECTOR:,}")
            if not self.at(","):
                break
            self.take()
            if self.at("]"):
                break
        self.expect("]", f"to close the '[' at character {open_.position + 1}")
        self.program.append(("vector", count))

    def call(self, token: Token) -> None:
        """call := function '(' positional* keyword* ')'"""
        name = token.text
        self.check_callable(token)
        open_ = self.take()
        self.enter(open_)
        count, keywords = 0, {}
        while not self.at(")"):
            if self.peek().kind == "name" and self.peek(1).text == "=":
                key = self.take().text
                self.take()
                if key in keywords:
                    raise refuse(self.expression, self.peek().position,
                                  f"{name}(...) gets {key}= twice")
                keywords[key] = self.constant(name, key)
            elif keywords:
                raise refuse(self.expression, self.peek().position,
                              "a positional argument cannot follow a keyword argument")
            else:
                self.argument()
                count += 1
            if not self.at(","):
                break
            self.take()
        self.expect(")", f"to close the call of {name}")
        self.depth -= 1
        self.check_arguments(token, count, keywords)
        self.program.append(("call", name, count, tuple(keywords.items())))

    def check_callable(self, token: Token) -> None:
        """Refuses calls of variables, constants and unknown functions."""
        name = token.text
        if name in self.names:
            raise refuse(self.expression, token.position,
                          f"{name} is a variable given by --at, so {name}(...) cannot call the "
                          f"function {name}; rename the variable")
        if name in CONSTANTS:
            raise refuse(self.expression, token.position,
                          f"{name} is a constant, not a function")
        if name not in FUNCTIONS:
            raise ArgumentError(f"{shown(self.expression)} calls {name}, which is not one of "
                                f"the functions {', '.join(sorted(FUNCTIONS))}")

    def check_arguments(self, token: Token, count: int, keywords: dict) -> None:
        """Refuses a call whose arguments the function's signature cannot take."""
        name = token.text
        if name == "max":
            signature = gates.max.signature if count == 1 else gates.maximum.signature
        else:
            signature = FUNCTIONS[name].signature
        try:
            signature.bind(*range(count), **keywords)
        except TypeError as error:
            raise refuse(self.expression, token.position,
                          f"{name}{signature} cannot be called this way: {error}") from None

    def argument(self) -> None:
        """A positional argument: a plain (signed) integer is kept as an int, else an expression."""
        sign = self.peek().text if self.at("-", "+") else ""
        number = self.peek(1 if sign else 0)
        after = self.peek(2 if sign else 1)
        value = small_int(number.text) if number.kind == "number" else None
        if value is not None and after.kind == "op" and after.text in (",", ")"):
            self.i += 2 if sign else 1
            self.program.append(("constant", -value if sign == "-" else value))
        else:
            self.expression_()

    def constant(self, name: str, key: str) -> Any:
        """A keyword value: a signed number, or a tuple of integers."""
        if self.at("("):
            return self.integer_tuple(name, key)
        sign = -1 if self.at("-") else 1
        if self.at("-", "+"):
            self.take()
        token = self.take()
        if token.kind != "number":
            raise refuse(self.expression, token.position,
                          f"the value of {key}= in {name}(...) must be a number or a tuple of "
                          f"integers such as (0, 1)")
        value = small_int(token.text)
        return sign * (token.value if value is None else value)

    def integer_tuple(self, name: str, key: str) -> tuple[int, ...]:
        """'(' [integer (',' integer)* [',']] ')' as a tuple of ints."""
        open_ = self.take()
        items = []
        while not self.at(")"):
            sign = -1 if self.at("-") else 1
            if self.at("-", "+"):
                self.take()
            token = self.take()
            value = small_int(token.text) if token.kind == "number" else None
            if value is None or len(items) >= MAX_VECTOR:
                raise refuse(self.expression, token.position,
                              f"the value of {key}= in {name}(...) must be a tuple of small "
                              f"integers such as (0, 1)")
            items.append(sign * value)
            if not self.at(","):
                break
            self.take()
        self.expect(")", f"to close the '(' at character {open_.position + 1}")
        return tuple(items)
