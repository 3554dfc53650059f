"""The rule query language: a string -> a :data:`~monitor.models.Condition` tree. Pure.

Grammar (OR binds loosest, then AND, then NOT, then NEAR)::

    query   := or
    or      := and ("OR" and)*
    and     := unary (["AND"] unary)*          # juxtaposition means AND
    unary   := ("NOT" | "-") unary | near
    near    := primary ("NEAR/" N primary)?
    primary := [field ":"] ( "(" or ")" | word | '"phrase"' | /regex/flags )
    word    := letters and digits, optionally ending in * (prefix) or ~ (inflections)

``title:(troops OR soldiers)`` scopes every term inside the parentheses. Operators are
upper-case (``and``/``or``/``not``/``near`` in lower case are ordinary words). Errors carry
the character offset so the loader can point at file:line:col.

Single terms, as written in the YAML ``any``/``all``/``none`` lists, go through
:func:`parse_term`, which accepts the same modifiers (field prefix, quotes, ``*``, ``~``,
``/regex/``) but treats several words as one phrase.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from monitor.models import FIELDS, AllOf, AnyOf, Condition, Near, Not, Regex, Term, TermMode
from monitor.text import term_keys

MAX_NEAR = 100
#: Largest number of word pairs a NEAR between two OR-groups may expand to.
MAX_NEAR_PAIRS = 64
#: Deepest nesting of parentheses and NOTs: keeps parsing and evaluation shallow.
MAX_DEPTH = 50
MAX_REGEX = 1000

try:  # google-re2: linear-time matching, no backtracking blow-ups
    import re2

    _RE2_OPTIONS = re2.Options()
    _RE2_OPTIONS.log_errors = False
    _RE2_OPTIONS.max_mem = 8 << 20
except ImportError:  # pragma: no cover - declared as a dependency
    re2 = None


class QueryError(ValueError):
    """A query that cannot be parsed; ``offset`` is the 0-based character position."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


@dataclass(frozen=True)
class _Tok:
    kind: str  # ( ) AND OR NOT NEAR FIELD WORD PHRASE REGEX END
    value: str
    offset: int
    #: NEAR distance, or the modifier ("*", "~", "") of a WORD/PHRASE, or regex flags.
    extra: str = ""


_FIELD = re.compile(r"([A-Za-z]+):(?=\S)")
_NEAR = re.compile(r"NEAR/(\d+)")
_WORD = re.compile(r"[^\s()\"]+")


def _lex(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "()":
            toks.append(_Tok(c, c, i))
            i += 1
        elif c == '"':
            end = text.find('"', i + 1)
            if end == -1:
                raise QueryError('unclosed quote: add the closing "', i)
            mod = text[end + 1] if end + 1 < n and text[end + 1] in "*~" else ""
            toks.append(_Tok("PHRASE", text[i + 1 : end], i, mod))
            i = end + 1 + len(mod)
        elif c == "/":
            j = i + 1
            while j < n and text[j] != "/":
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                raise QueryError("unclosed regular expression: end it with /", i)
            flags = re.match(r"[a-z]*", text[j + 1 :])
            assert flags is not None
            toks.append(_Tok("REGEX", text[i + 1 : j], i, flags.group()))
            i = j + 1 + len(flags.group())
        elif c == "-" and i + 1 < n and not text[i + 1].isspace() and (not toks or _gap(text, i)):
            toks.append(_Tok("NOT", "-", i))
            i += 1
        elif m := _FIELD.match(text, i):
            name = m.group(1)
            if name.lower() not in FIELDS:
                raise QueryError(
                    f"unknown field {name!r}; fields are {', '.join(FIELDS)} "
                    '(quote the text, "like:this", to search for it)',
                    i,
                )
            toks.append(_Tok("FIELD", name.lower(), i))
            i = m.end()
        elif m := _NEAR.match(text, i):
            toks.append(_Tok("NEAR", "NEAR", i, m.group(1)))
            i = m.end()
        else:
            m = _WORD.match(text, i)
            assert m is not None
            word = m.group()
            if word in ("AND", "OR", "NOT"):
                toks.append(_Tok(word, word, i))
            elif word == "NEAR" or word.startswith("NEAR/"):
                raise QueryError("NEAR needs a distance: write NEAR/5", i)
            else:
                mod = word[-1] if word[-1] in "*~" and len(word) > 1 else ""
                toks.append(_Tok("WORD", word[: len(word) - len(mod)], i, mod))
            i = m.end()
    toks.append(_Tok("END", "", n))
    return toks


def _gap(text: str, i: int) -> bool:
    """A '-' starts a negation only at the start of a word, not inside 'anti-tank'."""
    return i == 0 or text[i - 1].isspace() or text[i - 1] == "("


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _lex(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def parse(self) -> Condition:
        if self.peek().kind == "END":
            raise QueryError("empty query: write at least one term", 0)
        cond = self.or_()
        tok = self.peek()
        if tok.kind == ")":
            raise QueryError("unbalanced ')': remove it or add a matching '('", tok.offset)
        if tok.kind != "END":  # pragma: no cover - and_() consumes everything else
            raise QueryError(f"unexpected {tok.value!r}", tok.offset)
        return cond

    def or_(self) -> Condition:
        parts = [self.and_()]
        while self.peek().kind == "OR":
            tok = self.take()
            if self.peek().kind in ("END", ")", "OR", "AND"):
                raise QueryError("OR needs a term on both sides", tok.offset)
            parts.append(self.and_())
        return parts[0] if len(parts) == 1 else AnyOf(tuple(parts))

    def and_(self) -> Condition:
        parts = [self.unary()]
        while self.peek().kind not in ("END", ")", "OR"):
            if self.peek().kind == "AND":
                tok = self.take()
                if self.peek().kind in ("END", ")", "OR", "AND"):
                    raise QueryError("AND needs a term on both sides", tok.offset)
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def unary(self) -> Condition:
        tok = self.peek()
        if tok.kind == "NOT":
            self.take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise QueryError(f"NOTs nested deeper than {MAX_DEPTH}", tok.offset)
            if self.peek().kind in ("END", ")", "OR", "AND"):
                raise QueryError("NOT needs a term after it", tok.offset)
            child = self.unary()
            self.depth -= 1
            return Not(child)
        return self.near()

    def near(self) -> Condition:
        left = self.primary()
        tok = self.peek()
        if tok.kind != "NEAR":
            return left
        self.take()
        distance = int(tok.extra)
        if not 1 <= distance <= MAX_NEAR:
            raise QueryError(f"NEAR distance must be 1 to {MAX_NEAR}", tok.offset)
        if self.peek().kind in ("END", ")", "OR", "AND", "NOT", "NEAR"):
            raise QueryError("NEAR needs a term on both sides: troops NEAR/5 border", tok.offset)
        right = self.primary()
        lefts, rights = _near_operand(left), _near_operand(right)
        if lefts is None or rights is None:
            raise QueryError(
                "NEAR joins words, phrases or OR-groups of them, not AND/NOT groups or "
                "regular expressions",
                tok.offset,
            )
        if self.peek().kind == "NEAR":
            raise QueryError(
                "chain NEAR with AND instead: (a NEAR/5 b) AND (b NEAR/5 c)", self.peek().offset
            )
        if len(lefts) * len(rights) > MAX_NEAR_PAIRS:
            raise QueryError(
                f"NEAR between groups makes more than {MAX_NEAR_PAIRS} pairs; split the rule",
                tok.offset,
            )
        # (a OR b) NEAR/5 c means (a NEAR/5 c) OR (b NEAR/5 c).
        pairs = [Near(a, b, distance) for a in lefts for b in rights]
        return pairs[0] if len(pairs) == 1 else AnyOf(tuple(pairs))

    def primary(self) -> Condition:
        tok = self.take()
        field = None
        if tok.kind == "FIELD":
            field = tok.value
            tok = self.take()
        if tok.kind == "(":
            if self.peek().kind == ")":
                raise QueryError("empty parentheses", tok.offset)
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise QueryError(f"parentheses nested deeper than {MAX_DEPTH}", tok.offset)
            inner = self.or_()
            self.depth -= 1
            close = self.take()
            if close.kind != ")":
                raise QueryError("unbalanced '(': add the closing ')'", tok.offset)
            return _scope(inner, field) if field else inner
        if tok.kind in ("WORD", "PHRASE"):
            return make_term(tok.value, tok.extra, field, tok.offset)
        if tok.kind == "REGEX":
            return make_regex(tok.value, tok.extra, field, tok.offset)
        if tok.kind == ")":
            raise QueryError("unbalanced ')': remove it or add a matching '('", tok.offset)
        if tok.kind == "END":
            raise QueryError("the query ends too early: a term is missing", tok.offset)
        raise QueryError(f"expected a term, found {tok.value!r}", tok.offset)


def _near_operand(cond: Condition) -> list[Term] | None:
    """The terms a NEAR side stands for: a term, or an OR-group of terms (nested)."""
    if isinstance(cond, Term):
        return [cond]
    if isinstance(cond, AnyOf):
        out: list[Term] = []
        for child in cond.children:
            terms = _near_operand(child)
            if terms is None:
                return None
            out.extend(terms)
        return out
    return None


def _scope(cond: Condition, field: str) -> Condition:
    """Give every term without a field of its own the field of the enclosing group."""
    if isinstance(cond, Term | Regex):
        return cond if cond.field else replace(cond, field=field)
    if isinstance(cond, Near):
        left, right = _scope(cond.left, field), _scope(cond.right, field)
        assert isinstance(left, Term) and isinstance(right, Term)
        return Near(left, right, cond.distance)
    if isinstance(cond, Not):
        return Not(_scope(cond.child, field))
    children = tuple(_scope(c, field) for c in cond.children)
    return AnyOf(children) if isinstance(cond, AnyOf) else AllOf(children)


def make_term(text: str, modifier: str, field: str | None, offset: int = 0) -> Term:
    if "*" in text or "~" in text:
        raise QueryError(
            f"{text!r}: * and ~ go at the end of a term (sanction*, sanction~, "
            '"troop move"~); they cannot stand inside it',
            offset,
        )
    mode: TermMode = {"*": "prefix", "~": "stem"}.get(modifier, "word")  # type: ignore[assignment]
    keys = term_keys(text, mode)
    if not keys:
        raise QueryError(f"term {text!r} has no letters or digits to match", offset)
    shown = f'"{text}"' if " " in text.strip() else text.strip()
    prefix = f"{field}:" if field else ""
    return Term(prefix + shown + modifier, keys, field, mode)


def make_regex(pattern: str, flags: str, field: str | None, offset: int = 0) -> Regex:
    bad = set(flags) - {"i"}
    if bad:
        raise QueryError(
            f"unknown regular expression flag(s) {''.join(sorted(bad))!r}; only i", offset
        )
    if not pattern:
        raise QueryError("empty regular expression", offset)
    if len(pattern) > MAX_REGEX:
        raise QueryError(f"regular expression longer than {MAX_REGEX} characters", offset)
    check_regex(pattern, "i" in flags, offset)
    prefix = f"{field}:" if field else ""
    return Regex(f"{prefix}/{pattern}/{flags}", pattern, "i" in flags, field)


def compile_regex(pattern: str, ignore_case: bool) -> re2._Regexp:
    """The RE2 object for a checked pattern."""
    options = re2.Options()
    options.log_errors = False
    options.max_mem = _RE2_OPTIONS.max_mem
    options.case_sensitive = not ignore_case
    return re2.compile(pattern, options=options)


def check_regex(pattern: str, ignore_case: bool, offset: int = 0) -> None:
    """Refuse what RE2 cannot run in linear time (backreferences, lookaround...)."""
    try:
        compile_regex(pattern, ignore_case)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise QueryError(
            f"regular expression refused: {reason}. Only linear-time features are allowed "
            "(no backreferences or lookaround); rewrite it or use words and NEAR",
            offset,
        ) from exc


def parse_query(text: str) -> Condition:
    """Parse a full query string."""
    return _Parser(text).parse()


def parse_term(text: str) -> Condition:
    """Parse one YAML list entry: a word, phrase (several words), or /regex/, with an
    optional ``field:`` prefix and ``*`` / ``~`` modifier."""
    raw = text.strip()
    field = None
    if m := _FIELD.match(raw):
        name = m.group(1).lower()
        if name not in FIELDS:
            raise QueryError(
                f"unknown field {name!r}; fields are {', '.join(FIELDS)} "
                '(quote the text, "like:this", to search for it)',
                0,
            )
        field = name
        raw = raw[m.end() :]
    if raw.startswith("/") and len(raw) > 1:
        end = raw.rfind("/")
        if end > 0 and re.fullmatch(r"[a-z]*", raw[end + 1 :]):
            return make_regex(raw[1:end], raw[end + 1 :], field)
        raise QueryError("unclosed regular expression: end it with /", 0)
    modifier = raw[-1] if raw[-1:] in ("*", "~") and len(raw) > 1 else ""
    body = raw[: len(raw) - len(modifier)].strip().strip('"').strip()
    return make_term(body, modifier, field)
