"""MkDocs hook: reference tables made from the code, so they cannot drift from it.

A page asks for one with an HTML comment on a line of its own:

- `<!-- pgjobs:signature pgjobs.App -->`: the keyword parameters of a class's constructor (or
  of a function), with their types and defaults, as `inspect.signature` reads them;
- `<!-- pgjobs:options worker -->`: the options of a command of the `pgjobs` click group
  (`pgjobs.cli:main`), with their types, defaults and help;
- `<!-- pgjobs:settings -->`: the worker's settings (`Worker(app, **settings)`), from the one
  table that defines them, `pgjobs.worker.config.SETTINGS`;
- `<!-- pgjobs:errors -->`: every exception `pgjobs` exports, with its bases and the first
  line of its docstring.
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any

MARKER = re.compile(r"^<!-- pgjobs:(\w+)\s*([\w.-]*)\s*-->$", re.MULTILINE)


def _resolve(dotted: str) -> Any:
    module, _, rest = dotted.partition(".")
    obj: Any = importlib.import_module(module)
    parts = rest.split(".") if rest else []
    while parts and isinstance(obj, type(importlib)):
        try:
            obj = importlib.import_module(f"{obj.__name__}.{parts[0]}")
        except ModuleNotFoundError:
            break
        parts.pop(0)
    for part in parts:
        obj = getattr(obj, part)
    return obj


def _signature(dotted: str) -> str:
    obj = _resolve(dotted)
    fn = obj  # a class gives its constructor's signature, without self
    rows = ["| parameter | type | default |", "|---|---|---|"]
    for name, p in inspect.signature(fn).parameters.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        kind = "" if p.kind is p.KEYWORD_ONLY else " (positional)"
        annotation = "" if p.annotation is p.empty else str(p.annotation)
        default = "required" if p.default is p.empty else f"`{p.default!r}`"
        rows.append(f"| `{name}`{kind} | `{annotation}` | {default} |".replace("`` ", ""))
    return "\n".join(rows)


def _options(command: str) -> str:
    import click

    from pgjobs.cli import main

    ctx = click.Context(main, info_name="pgjobs")
    cmd = main.get_command(ctx, command)
    if cmd is None:
        raise ValueError(f"pgjobs has no command {command!r}")
    rows = ["| option | type | default | what it does |", "|---|---|---|---|"]
    for param in cmd.get_params(ctx):
        if not isinstance(param, click.Option) or param.hidden or "--help" in param.opts:
            continue
        names = " / ".join(f"`{n}`" for n in [*param.opts, *param.secondary_opts])
        if isinstance(param.type, click.Choice):
            kind = " \\| ".join(f"`{c}`" for c in param.type.choices)
        else:
            kind = "flag" if param.is_flag else (param.metavar or param.type.name)
        value = param.default
        unset = value is None or type(value).__name__ == "Sentinel"  # click's "no default"
        default = "" if unset else f"`{value}`"
        if param.envvar:
            default = f"{default} (`${param.envvar}`)".strip()
        text = (param.help or "").replace("\n", " ").replace("|", "\\|")
        rows.append(f"| {names} | {kind} | {default} | {text} |")
    return "\n".join(rows)


def _settings() -> str:
    from pgjobs.worker.config import SETTINGS

    rows = ["| keyword | default | at least | option | what it does |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        least = "" if s.minimum is None else f"`{s.minimum:g}`"
        option = f"`{s.option}`" if s.option else "(Python only)"
        text = s.help.replace("\n", " ").replace("|", "\\|")
        rows.append(f"| `{s.name}` | `{s.default!r}` | {least} | {option} | {text} |")
    return "\n".join(rows)


def _errors() -> str:
    import pgjobs

    rows = ["| exception | derives from | meaning |", "|---|---|---|"]
    for name in sorted(pgjobs.__all__):
        obj = getattr(pgjobs, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            bases = ", ".join(f"`{b.__name__}`" for b in obj.__bases__)
            doc = (inspect.getdoc(obj) or "").split("\n\n")[0].replace("\n", " ")
            rows.append(f"| `pgjobs.{name}` | {bases} | {doc} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, **_: Any) -> str:
    def table(m: re.Match[str]) -> str:
        kind, target = m.group(1), m.group(2)
        if kind == "signature":
            return _signature(target)
        if kind == "options":
            return _options(target)
        if kind == "settings":
            return _settings()
        if kind == "errors":
            return _errors()
        raise ValueError(f"unknown pgjobs marker {m.group(0)!r}")

    return MARKER.sub(table, markdown)
