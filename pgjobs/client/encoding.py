"""A call's arguments validated and written as JSON, with its options: a NewJob to insert."""

from __future__ import annotations

import inspect
import json
import re
import typing
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from types import MappingProxyType
from typing import Any, Protocol

from pydantic import ConfigDict, PydanticUserError, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from pgjobs.client.host import Host
from pgjobs.core.errors import ConfigurationError, InvalidArguments, SerializationError
from pgjobs.core.jobs import Status, new_job_id

_P = inspect.Parameter


# NaN and infinity have no JSON form. Pydantic would quietly write them as
# null; keeping them as floats lets json.dumps(allow_nan=False) refuse them.
_STRICT_FLOATS = ConfigDict(ser_json_inf_nan="constants")


#: How deep one argument may nest lists and objects (dicts, models): [[1]] is
#: two levels. pydantic's serializer stops near 255 levels, and the parsers
#: that read arguments back (json.loads, psycopg's jsonb loader in a worker)
#: recurse, so how deep they reach depends on the stack they run on: a fixed
#: limit well below both means an argument accepted is one a worker can read.
MAX_DEPTH = 200

#: What pydantic's serializer says when a value nests past its limit (2.10 and later; 2.9
#: takes it for a cycle and says "Circular reference detected (depth exceeded)").
_PYDANTIC_TOO_DEEP = ("Maximum serialization depth exceeded", "(depth exceeded)")


def too_deep(name: str, label: str | None = None) -> SerializationError:
    """The error for arguments nested deeper than MAX_DEPTH."""
    what = "arguments nest" if label is None else f"argument {label!r} nests"
    return SerializationError(
        f"task {name!r}: {what} lists and objects deeper than {MAX_DEPTH} levels; "
        "flatten them, or store the data elsewhere and pass a reference",
        field=label,
    )


def _adapter(hint: Any) -> TypeAdapter[Any]:
    if hint is _P.empty:
        hint = Any
    try:
        return TypeAdapter(hint, config=_STRICT_FLOATS)
    except PydanticUserError:  # a model that carries its own config
        return TypeAdapter(hint)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    return f"{err['msg']} (at {where})" if where else str(err["msg"])


class Signature:
    """A task function's parameters, with a pydantic validator for each."""

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        self.name = name
        self.sig = inspect.signature(fn)
        try:
            hints = typing.get_type_hints(fn)
        except Exception as exc:  # unresolvable forward references
            raise ConfigurationError(
                f"task {name!r}: cannot resolve its type hints: {exc}"
            ) from exc
        self.positional: list[_P] = []
        self.var_positional: _P | None = None
        self.var_keyword: _P | None = None
        self.adapters: dict[str, TypeAdapter[Any]] = {}
        for p in self.sig.parameters.values():
            self.adapters[p.name] = _adapter(hints.get(p.name, Any))
            if p.kind in (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD):
                self.positional.append(p)
            elif p.kind is _P.VAR_POSITIONAL:
                self.var_positional = p
            elif p.kind is _P.VAR_KEYWORD:
                self.var_keyword = p
        self.result = _adapter(hints.get("return", Any))
        # The common call, plain positional values, is checked without
        # inspect's bind(): how many may be given, and how many must.
        self.max_positional = len(self.positional)
        self.min_positional = sum(1 for p in self.positional if p.default is _P.empty)
        self.keyword_only_required = any(
            p.kind is _P.KEYWORD_ONLY and p.default is _P.empty
            for p in self.sig.parameters.values()
        )
        # Parameters whose hint is exactly int, str, bool or float (or none at
        # all): a value of exactly that type is already valid and already JSON,
        # so pydantic is not asked (the result would be the value itself; an
        # infinite or NaN float fails at JSON either way). An int for a float
        # still goes through pydantic, which makes it a float.
        self.exact: dict[str, tuple[type, ...]] = {}
        for p in self.positional:
            hint = hints.get(p.name, _P.empty)
            if hint in (int, str, bool, float):
                self.exact[p.name] = (hint,)
            elif hint is _P.empty or hint is Any:
                self.exact[p.name] = (int, str, bool, type(None))
        # The same, by position, for the loop every enqueue runs.
        self.exact_by_position = tuple(self.exact.get(p.name, ()) for p in self.positional)

    def _param_for(self, index: int | None, key: str | None) -> _P:
        if index is not None:
            if index < len(self.positional):
                return self.positional[index]
            assert self.var_positional is not None  # bind() checked the arity
            return self.var_positional
        assert key is not None
        p = self.sig.parameters.get(key)
        if p is not None and p.kind is not _P.VAR_KEYWORD:
            return p
        assert self.var_keyword is not None
        return self.var_keyword

    def convert(self, p: _P, label: str, value: Any, to_json: bool) -> Any:
        """One argument checked against parameter `p`'s type; as JSON data with `to_json`."""
        adapter = self.adapters[p.name]
        try:
            validated = adapter.validate_python(value)
        except ValidationError as exc:
            raise InvalidArguments(
                f"task {self.name!r}: argument {label!r}: {_first_error(exc)}", field=label
            ) from None
        except RecursionError:
            raise too_deep(self.name, label) from None
        if not to_json:
            return validated
        try:
            return adapter.dump_python(validated, mode="json")
        except RecursionError:
            raise too_deep(self.name, label) from None
        except (PydanticSerializationError, ValueError, TypeError) as exc:
            if str(exc).endswith(_PYDANTIC_TOO_DEEP):
                raise too_deep(self.name, label) from None
            # ValueError: e.g. bytes that are not UTF-8 text.
            raise SerializationError(
                f"task {self.name!r}: argument {label!r} cannot be stored as JSON: {exc}",
                field=label,
            ) from None

    def _walk(
        self, args: Sequence[Any], kwargs: Mapping[str, Any], to_json: bool
    ) -> tuple[list[Any], dict[str, Any]]:
        if (
            not kwargs
            and not self.keyword_only_required
            and self.min_positional <= len(args) <= self.max_positional
        ):
            # zip() with strict= as a keyword costs more than the rest of this loop.
            for exact_kinds, v in zip(self.exact_by_position, args):  # noqa: B905
                if type(v) not in exact_kinds:
                    break
            else:
                return list(args), {}
            exact = self.exact
            out: list[Any] = []
            for p, v in zip(self.positional, args, strict=False):
                kinds = exact.get(p.name)
                if kinds is not None and type(v) in kinds:
                    out.append(v)
                else:
                    out.append(self.convert(p, p.name, v, to_json))
            return out, {}
        try:
            self.sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArguments(f"task {self.name!r}: {exc}") from None
        out_args = [
            self.convert(self._param_for(i, None), self._param_for(i, None).name, v, to_json)
            for i, v in enumerate(args)
        ]
        out_kwargs = {
            k: self.convert(self._param_for(None, k), k, v, to_json) for k, v in kwargs.items()
        }
        return out_args, out_kwargs

    def encode_after(
        self, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """Check a workflow step's own arguments: its first comes from the steps before it."""
        try:
            self.sig.bind(None, *args, **kwargs)
        except TypeError as exc:
            raise InvalidArguments(
                f"task {self.name!r}, whose first argument is the result of the step before "
                f"it: {exc}"
            ) from None
        out_args = [
            self.convert(self._param_for(i, None), self._param_for(i, None).name, v, True)
            for i, v in enumerate(args, start=1)
        ]
        out_kwargs = {
            k: self.convert(self._param_for(None, k), k, v, True) for k, v in kwargs.items()
        }
        return out_args, out_kwargs

    def encode(
        self, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """Check a call against the signature; return its arguments as JSON values."""
        return self._walk(args, kwargs, to_json=True)

    def decode(
        self, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """Turn stored JSON arguments back into the types the function declares."""
        return self._walk(args, kwargs, to_json=False)

    def encode_result(self, value: Any) -> str:
        """The task's return value as JSON text."""
        if value is None:
            return "null"  # what the serializer gives too, for the most common result
        try:
            # Strict: a NaN written as JSON would be refused by jsonb when the
            # worker records the batch, holding up every other outcome in it.
            text = to_json(self.result.dump_python(value, mode="json"))
        except (PydanticSerializationError, ValueError, TypeError, RecursionError) as exc:
            raise SerializationError(
                f"task {self.name!r}: its return value cannot be stored as JSON: {exc}"
            ) from None
        bad = unstorable(text)
        if bad:
            raise SerializationError(
                f"task {self.name!r}: its return value contains {bad}, "
                "which Postgres cannot store in JSON"
            )
        return text


#: The longest delay or dedup window: ten years, far inside what datetimes can hold.
MAX_DELAY = 10 * 365.25 * 86400.0


@dataclass(frozen=True)
class Options:
    """How a job is enqueued: queue, priority, timing, attempts and dedup key."""

    queue: str = "default"
    priority: int = 0
    delay: float | timedelta | None = None
    run_at: datetime | None = None
    max_attempts: int = 1
    dedup_key: str | None = None
    dedup_window: float | timedelta | None = None

    def window_seconds(self) -> float | None:
        """The dedup window in seconds: how long the key holds after the job ends."""
        if self.dedup_window is None:
            return None
        if self.dedup_key is None:
            raise InvalidArguments("dedup_window needs a dedup_key", field="dedup_window")
        w = self.dedup_window
        seconds = w.total_seconds() if isinstance(w, timedelta) else float(w)
        if not 0 <= seconds <= MAX_DELAY:  # also refuses NaN
            raise InvalidArguments(
                f"dedup_window must be between 0 and {MAX_DELAY:.0f} seconds, got {seconds}",
                field="dedup_window",
            )
        return seconds

    def resolved_run_at(self) -> datetime | None:
        if self.run_at is not None and self.delay is not None:
            raise InvalidArguments("give either delay or run_at, not both")
        if self.run_at is not None:
            if self.run_at.tzinfo is None:
                raise InvalidArguments("run_at must be timezone-aware (e.g. datetime.now(UTC))")
            return self.run_at
        if self.delay is not None:
            seconds = (
                self.delay.total_seconds() if isinstance(self.delay, timedelta) else self.delay
            )
            if not 0 <= seconds <= MAX_DELAY:  # also refuses NaN
                raise InvalidArguments(
                    f"delay must be between 0 and {MAX_DELAY:.0f} seconds, got {seconds}",
                    field="delay",
                )
            if seconds > 0:
                return datetime.now(UTC) + timedelta(seconds=seconds)
        return None


@dataclass(slots=True)
class NewJob:
    """A job ready to insert: validated, encoded and sized."""

    id: uuid.UUID
    task: str
    queue: str
    status: str
    priority: int
    args: list[Any]
    kwargs: dict[str, Any]
    args_json: str
    kwargs_json: str
    max_attempts: int
    run_at: datetime | None
    dedup_key: str | None
    window_seconds: float | None = None
    limited: bool = False
    meta_json: str = "{}"


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _json_encoder() -> Callable[[Any], str]:
    """Compact, ASCII, NaN-refusing JSON text: the stdlib's C encoder, made once.

    JSONEncoder.encode() builds a new C encoder on every call, which was three
    quarters of the cost of encoding a short argument list. This one keeps no
    markers for cycles: values come from pydantic, which refuses cycles, or
    are raw values, where a cycle ends in RecursionError (caught as well).
    """
    slow = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return slow
    try:
        # markers, default, string encoder, indent, separators, sort_keys,
        # skipkeys, allow_nan: what json.dumps(separators=(",", ":"), allow_nan=False) passes.
        fast = make(
            None,
            _not_json,
            json.encoder.encode_basestring_ascii,
            None,
            ":",
            ",",
            False,
            False,
            False,
        )

        def encode(value: Any) -> str:
            return "".join(fast(value, 0))

        sample: Any = [1, -2.5, "é\n", {"a": None, "b": [True]}]
        if encode(sample) == slow(sample):  # the same arguments on this Python
            return encode
    except (TypeError, ValueError):
        pass
    return slow


#: Python values as compact JSON text that jsonb accepts; NaN and infinity raise ValueError.
to_json = _json_encoder()

# An escaped NUL: a backslash-u0000 preceded by an even number of backslashes
# (an odd number would make it the literal text "\u0000", which is fine).
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def unstorable(json_text: str) -> str | None:
    """What in JSON text jsonb refuses (a NUL, an unpaired surrogate), or None."""
    # Substring tests are the fast path: both need an escape starting so.
    if "\\u0000" in json_text and _NUL_ESCAPE.search(json_text) is not None:
        return "a NUL character (\\u0000)"
    if "\\ud" in json_text:
        # Characters past U+FFFF are escaped as surrogate pairs, which jsonb
        # takes; a lone half (as surrogateescape makes of undecodable bytes)
        # it refuses. Decoded, a pair is one character and a lone half stays
        # a surrogate, which UTF-8 cannot encode.
        try:
            json.dumps(json.loads(json_text), ensure_ascii=False).encode()
        except UnicodeEncodeError:
            return "an unpaired surrogate character"
    return None


#: The longest JSON text of arguments that cannot nest past MAX_DEPTH.
_SHORT_ENOUGH = 2 * (MAX_DEPTH + 1)

# nested_deeper_than() keeps brackets, both kinds as [ and ] (JSON pairs them
# right), and quotes; then counts +1 for [ and -1 for ] once few levels are left.
_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS_OR_QUOTES = bytes(c for c in range(256) if c not in b'[]{}"')
_STEP = [0] * 256
_STEP[ord("[")], _STEP[ord("]")] = 1, -1
_PEELS = 8


def nested_deeper_than(json_text: str, limit: int) -> bool:
    """Whether compact JSON text nests arrays and objects more than `limit` levels deep.

    All of it runs in C (str and bytes methods): a few microseconds a kilobyte.
    """
    if len(json_text) <= 2 * limit or json_text.count("[") + json_text.count("{") <= limit:
        return False  # too short, or too few brackets (those in strings too) to nest so deep
    if "\\" in json_text:
        # Escapes first, while the characters they escape are still there.
        json_text = json_text.replace("\\\\", "").replace('\\"', "")
    # No bracket lies between two quotes side by side: dropping them moves no
    # bracket in or out of a string. Strings without brackets, most, go so.
    marks = json_text.encode().translate(_SQUARE, _NOT_BRACKETS_OR_QUOTES).replace(b'""', b"")
    if b'"' in marks:
        marks = b"".join(marks.split(b'"')[::2])  # what lies between strings
    # A pass drops the innermost pairs, one level; most arguments are gone in a few.
    for passes in range(_PEELS):
        if not marks:
            return passes > limit
        marks = marks.replace(b"[]", b"")
    # Deeper ones: the rest is _PEELS levels shallower, walked once.
    return max(accumulate(map(_STEP.__getitem__, marks)), default=0) > limit - _PEELS


def check_options(options: Options) -> tuple[datetime | None, float | None]:
    """Validate enqueue options; their run_at and dedup window in seconds."""
    if options.priority < -32768 or options.priority > 32767:
        raise InvalidArguments(
            f"priority must fit in a smallint, got {options.priority}", field="priority"
        )
    if options.max_attempts < 1:
        raise InvalidArguments(f"max_attempts must be at least 1, got {options.max_attempts}")
    if not options.queue.strip():
        raise InvalidArguments(
            f"queue must be a non-empty name, got {options.queue!r}", field="queue"
        )
    if options.dedup_key is not None and not options.dedup_key:
        raise InvalidArguments("dedup_key must be a non-empty string", field="dedup_key")
    for field, text in (("queue", options.queue), ("dedup_key", options.dedup_key)):
        if text is not None and "\x00" in text:
            raise InvalidArguments(f"{field} must not contain a NUL character", field=field)
    return options.resolved_run_at(), options.window_seconds()


#: One call's arguments as checked and stored: args, kwargs, and each as JSON text.
Encoded = tuple[list[Any], dict[str, Any], str, str]


def encode_call(
    app: Host,
    name: str,
    signature: Signature | None,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    after_input: bool = False,
) -> Encoded:
    """Validate one call's arguments and write them as JSON; raise before anything is written.

    `after_input`: a workflow step whose first argument the steps before it give.
    """
    if signature is not None and after_input:
        j_args, j_kwargs = signature.encode_after(args, kwargs)
    elif signature is not None:
        j_args, j_kwargs = signature._walk(args, kwargs, True)  # encode(), one call less
    else:
        j_args, j_kwargs = list(args), dict(kwargs)
    try:
        args_json = to_json(j_args)
        kwargs_json = to_json(j_kwargs) if j_kwargs else "{}"
    except RecursionError:
        # Only nesting makes the encoder recurse that far (values that skip
        # pydantic are scalars): deeper than the stack allows, so past MAX_DEPTH.
        raise too_deep(name) from None
    except (TypeError, ValueError) as exc:
        raise SerializationError(
            f"task {name!r}: arguments cannot be stored as JSON: {exc}"
        ) from None
    # Both need an escape, which ASCII-only JSON text of plain values lacks.
    bad = "\\u" in args_json and unstorable(args_json)
    if not bad and j_kwargs and "\\u" in kwargs_json:
        bad = unstorable(kwargs_json)
    if bad:
        raise SerializationError(
            f"task {name!r}: arguments contain {bad}, which Postgres cannot store in JSON"
        )
    # json.dumps escapes non-ASCII by default, so characters are bytes here.
    size = len(args_json) + len(kwargs_json)
    if size > app.max_payload_bytes:
        from pgjobs.core.errors import PayloadTooLarge

        raise PayloadTooLarge(
            f"task {name!r}: arguments are {size} bytes as JSON, over the limit of "
            f"{app.max_payload_bytes} bytes (App(max_payload_bytes=...)); store large data "
            "elsewhere and pass a reference"
        )
    # Nesting deeper than MAX_DEPTH needs two brackets a level: shorter text
    # cannot have it, so ordinary arguments pay one comparison. The outer
    # array (args) or object (kwargs) is one level more.
    if size > _SHORT_ENOUGH and (
        nested_deeper_than(args_json, MAX_DEPTH + 1)
        or nested_deeper_than(kwargs_json, MAX_DEPTH + 1)
    ):
        raise too_deep(name)
    return j_args, j_kwargs, args_json, kwargs_json


def new_job(
    name: str,
    encoded: Encoded,
    options: Options,
    checked: tuple[datetime | None, float | None],
    limited: bool,
) -> NewJob:
    run_at, window = checked
    j_args, j_kwargs, args_json, kwargs_json = encoded
    # Positional, in the order of NewJob's fields: keywords cost as much as
    # making the rest of the object (tests/test_enqueue.py checks the order).
    return NewJob(
        new_job_id(),
        name,
        options.queue,
        initial_status(run_at),
        options.priority,
        j_args,
        j_kwargs,
        args_json,
        kwargs_json,
        options.max_attempts,
        run_at,
        options.dedup_key,
        window,
        limited,
    )


def prepare(
    app: Host,
    name: str,
    signature: Signature | None,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    options: Options,
    limited: bool = False,
    checked: tuple[datetime | None, float | None] | None = None,
    after_input: bool = False,
) -> NewJob:
    """Validate and encode one call; raise before anything is written.

    `checked` is check_options(options), when the caller did it once for many calls.
    `after_input`: a workflow step whose first argument the steps before it give.
    """
    encoded = encode_call(app, name, signature, args, kwargs, after_input)
    return new_job(name, encoded, options, checked or check_options(options), limited)


def encode_each(task: Target, items: Iterable[Any]) -> Iterator[Encoded]:
    """Validate and encode the arguments of an enqueue_many()'s items, one at a time."""
    app, name, signature = task.app, task.name, task.signature
    for i, item in enumerate(items):
        a, kw = split_item(item)
        try:
            yield encode_call(app, name, signature, a, kw)
        except InvalidArguments as exc:
            raise type(exc)(f"item {i}: {exc}") from None


def prepare_each(
    task: Target,
    opts: Options,
    items: Iterable[Any],
    checked: tuple[datetime | None, float | None] | None = None,
) -> Iterator[NewJob]:
    """Validate and encode the items of an enqueue_many(), one at a time."""
    # The options are the same for every item: checked once. (A delay is
    # resolved once too, so the batch shares one run_at.)
    checked = checked or check_options(opts)
    name, limited = task.name, task.limited
    for encoded in encode_each(task, items):
        yield new_job(name, encoded, opts, checked, limited)


def prepare_many(task: Target, opts: Options, items: Iterable[Any]) -> list[NewJob]:
    """All items of an enqueue_many(), validated before anything is written."""
    return list(prepare_each(task, opts, items))


_SCHEDULED = Status.SCHEDULED.value
_PENDING = Status.PENDING.value


def initial_status(run_at: datetime | None) -> str:
    """A new job's status: scheduled when it has a time to wait for, else pending."""
    return _PENDING if run_at is None else _SCHEDULED


def split_item(item: Any) -> tuple[Sequence[Any], Mapping[str, Any]]:
    """One element of enqueue_many(): a tuple/list of args, a dict of kwargs, or (args, kwargs)."""
    kind = type(item)
    if (kind is tuple or kind is list) and len(item) != 2:
        # The common shape, tested first: isinstance() against Mapping, an
        # abstract class, costs more than the rest of this function.
        return item, _NO_KWARGS
    if isinstance(item, Mapping):
        return (), item
    if (
        isinstance(item, tuple)
        and len(item) == 2
        and isinstance(item[0], (tuple, list))
        and isinstance(item[1], Mapping)
    ):
        return item[0], item[1]
    if isinstance(item, (tuple, list)):
        return item, _NO_KWARGS
    return (item,), _NO_KWARGS


_NO_KWARGS: Mapping[str, Any] = MappingProxyType({})


class Target(Protocol):
    """What encoding needs of a task (pgjobs.client.tasks.Task has it)."""

    @property
    def app(self) -> Host: ...

    @property
    def name(self) -> str: ...

    @property
    def signature(self) -> Signature | None: ...

    @property
    def limited(self) -> bool: ...
