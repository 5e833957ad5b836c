"""The unified action space and its text forms.

Canonical actions (`synth.schema.Action`) are stored once; this module renders
them as the function calls a model is trained to emit, and parses such calls
back. The Aguvis form is pyautogui calls with coordinates normalised to the
screenshot (`pyautogui.click(x=0.3125, y=0.7102)`), plus `browser.*` calls for
what pyautogui cannot say (select, navigate, back) and `answer`/`terminate`.

Parsing uses `ast`: only calls with literal arguments are accepted, nothing is
evaluated, and every failure raises `ActionParseError` saying what was wrong,
so an LLM's reply can be quoted its own error in a repair turn.
"""

from __future__ import annotations

import ast
from typing import Any

from synth.schema import Action

# Playwright key names <-> pyautogui key names. Single characters map to themselves.
_KEYS_TO_PYAUTOGUI = {
    "Enter": "enter",
    "Tab": "tab",
    "Escape": "esc",
    "Backspace": "backspace",
    "Delete": "delete",
    "Space": "space",
    " ": "space",
    "ArrowUp": "up",
    "ArrowDown": "down",
    "ArrowLeft": "left",
    "ArrowRight": "right",
    "Home": "home",
    "End": "end",
    "PageUp": "pageup",
    "PageDown": "pagedown",
    "Insert": "insert",
    "Control": "ctrl",
    "Shift": "shift",
    "Alt": "alt",
    "Meta": "command",
    "ControlOrMeta": "ctrl",
    **{f"F{i}": f"f{i}" for i in range(1, 13)},
}
_KEYS_FROM_PYAUTOGUI = {v: k for k, v in _KEYS_TO_PYAUTOGUI.items() if k not in (" ", "ControlOrMeta")}
_KEYS_FROM_PYAUTOGUI.update({"return": "Enter", "escape": "Escape", "win": "Meta", "cmd": "Meta"})


class ActionParseError(ValueError):
    """A string that is not a valid action call; the message says why."""


def key_to_pyautogui(key: str) -> list[str]:
    """'Control+a' -> ['ctrl', 'a']."""
    parts = key.split("+") if key != "+" else ["+"]
    return [_KEYS_TO_PYAUTOGUI.get(p, p if len(p) == 1 else p.lower()) for p in parts]


def key_from_pyautogui(keys: list[str]) -> str:
    """['ctrl', 'a'] -> 'Control+a'."""
    out = []
    for k in keys:
        if len(k) == 1:
            out.append(k)
        elif k.lower() in _KEYS_FROM_PYAUTOGUI:
            out.append(_KEYS_FROM_PYAUTOGUI[k.lower()])
        else:
            raise ActionParseError(f"unknown key {k!r}")
    return "+".join(out)


def _num(v: float | None) -> str:
    return f"{round(float(v or 0.0), 4):g}"


def _xy(a: Action) -> str:
    return f"x={_num(a.x)}, y={_num(a.y)}"


def to_aguvis(action: Action) -> str:
    """Render an action as an Aguvis pyautogui call string."""
    n = action.name
    if n == "click":
        return f"pyautogui.click({_xy(action)})"
    if n == "double_click":
        return f"pyautogui.doubleClick({_xy(action)})"
    if n == "right_click":
        return f"pyautogui.rightClick({_xy(action)})"
    if n == "hover":
        return f"pyautogui.moveTo({_xy(action)})"
    if n == "type":
        return f"pyautogui.write(message={action.text or ''!r})"
    if n == "press":
        keys = key_to_pyautogui(action.key or "")
        if len(keys) == 1:
            return f"pyautogui.press(keys={keys[0]!r})"
        return f"pyautogui.hotkey(keys={keys!r})"
    if n == "scroll":
        # pyautogui scrolls up for positive amounts; canonical dy is positive down.
        if action.dx:
            return f"pyautogui.hscroll(page={_num(action.dx)})"
        return f"pyautogui.scroll(page={_num(-(action.dy or 0.0))})"
    if n == "drag":
        return (
            f"pyautogui.moveTo({_xy(action)})\n"
            f"pyautogui.dragTo(x={_num(action.x2)}, y={_num(action.y2)})"
        )
    if n == "select":
        return f"browser.select_option({_xy(action)}, value={action.text or ''!r})"
    if n == "navigate":
        return f"browser.goto(url={action.text or ''!r})"
    if n == "go_back":
        return "browser.back()"
    if n == "answer":
        return f"answer(text={action.text or ''!r})"
    if n == "done":
        return "terminate(status='success')"
    raise ValueError(f"unknown action {n!r}")


def _call(node: ast.stmt) -> tuple[str, list[Any], dict[str, Any]]:
    if not isinstance(node, ast.Expr) or not isinstance(node.value, ast.Call):
        raise ActionParseError(f"expected a function call, got {ast.unparse(node)!r}")
    call = node.value
    name = ast.unparse(call.func)
    try:
        args = [ast.literal_eval(a) for a in call.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg}
    except ValueError as e:
        raise ActionParseError(f"{name}(...) must have literal arguments: {e}") from None
    return name, args, kwargs


def _coord(name: str, kwargs: dict[str, Any], args: list[Any], kx: str = "x", ky: str = "y") -> tuple[float, float]:
    if kx in kwargs and ky in kwargs:
        x, y = kwargs[kx], kwargs[ky]
    elif len(args) >= 2:
        x, y = args[0], args[1]
    else:
        raise ActionParseError(f"{name} needs {kx}= and {ky}=")
    if not all(isinstance(v, (int, float)) for v in (x, y)):
        raise ActionParseError(f"{name}: coordinates must be numbers")
    if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
        raise ActionParseError(f"{name}: coordinates must be fractions of the screenshot in [0, 1], got ({x}, {y})")
    return float(x), float(y)


def _text(name: str, kwargs: dict[str, Any], args: list[Any], key: str) -> str:
    value = kwargs.get(key, args[0] if args else None)
    if not isinstance(value, str):
        raise ActionParseError(f"{name} needs a string {key}=")
    return value


_POINTER = {
    "pyautogui.click": "click",
    "pyautogui.doubleClick": "double_click",
    "pyautogui.rightClick": "right_click",
    "pyautogui.moveTo": "hover",
}


def from_aguvis(text: str) -> Action:
    """Parse an Aguvis call string (one call, or moveTo + dragTo) into an Action."""
    try:
        body = ast.parse(text.strip()).body
    except SyntaxError as e:
        raise ActionParseError(f"not valid Python call syntax: {e.msg} in {text.strip()!r}") from None
    if not body:
        raise ActionParseError("no action call found")
    if len(body) == 2:
        (n1, a1, k1), (n2, a2, k2) = _call(body[0]), _call(body[1])
        if n1 == "pyautogui.moveTo" and n2 == "pyautogui.dragTo":
            x, y = _coord(n1, k1, a1)
            x2, y2 = _coord(n2, k2, a2)
            return Action(name="drag", x=x, y=y, x2=x2, y2=y2)
    if len(body) != 1:
        raise ActionParseError(f"expected exactly one action call, got {len(body)}")
    name, args, kwargs = _call(body[0])
    if name in _POINTER:
        x, y = _coord(name, kwargs, args)
        if name == "pyautogui.click" and kwargs.get("clicks") == 2:
            return Action(name="double_click", x=x, y=y)
        if name == "pyautogui.click" and kwargs.get("button") == "right":
            return Action(name="right_click", x=x, y=y)
        return Action(name=_POINTER[name], x=x, y=y)
    if name in ("pyautogui.write", "pyautogui.typewrite"):
        return Action(name="type", text=_text(name, kwargs, args, "message"))
    if name in ("pyautogui.press", "pyautogui.hotkey"):
        keys = kwargs.get("keys", args if len(args) != 1 else args[0])
        if isinstance(keys, str):
            keys = [keys]
        if not keys or not all(isinstance(k, str) for k in keys):
            raise ActionParseError(f"{name} needs keys= as a key name or a list of key names")
        return Action(name="press", key=key_from_pyautogui(list(keys)))
    if name in ("pyautogui.scroll", "pyautogui.hscroll"):
        amount = kwargs.get("page", args[0] if args else None)
        if not isinstance(amount, (int, float)):
            raise ActionParseError(f"{name} needs page= as a number (fraction of the screen)")
        if name == "pyautogui.hscroll":
            return Action(name="scroll", dx=float(amount), dy=0.0)
        return Action(name="scroll", dx=0.0, dy=-float(amount))
    if name == "browser.select_option":
        x, y = _coord(name, kwargs, args)
        return Action(name="select", x=x, y=y, text=_text(name, kwargs, args[2:], "value"))
    if name == "browser.goto":
        return Action(name="navigate", text=_text(name, kwargs, args, "url"))
    if name == "browser.back":
        return Action(name="go_back")
    if name == "answer":
        return Action(name="answer", text=_text(name, kwargs, args, "text"))
    if name == "terminate":
        return Action(name="done")
    raise ActionParseError(
        f"unknown function {name!r}; use pyautogui.click/doubleClick/rightClick/moveTo/dragTo/"
        "write/press/hotkey/scroll/hscroll, browser.select_option/goto/back, answer or terminate"
    )


FORMATS = {"aguvis": (to_aguvis, from_aguvis)}
"""Render/parse pairs by format name; synth.export.formats adds the others."""


def render(action: Action, fmt: str = "aguvis") -> str:
    return FORMATS[fmt][0](action)


def parse(text: str, fmt: str = "aguvis") -> Action:
    return FORMATS[fmt][1](text)
