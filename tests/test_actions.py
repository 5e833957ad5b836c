"""The Aguvis text form of every canonical action parses back to the same action."""

from __future__ import annotations

import pytest

from synth.actions import ActionParseError, from_aguvis, to_aguvis
from synth.schema import Action

EVERY_KIND = [
    Action(name="click", x=0.3125, y=0.7102),
    Action(name="double_click", x=0.5, y=0.25),
    Action(name="right_click", x=0.0, y=1.0),
    Action(name="hover", x=0.1234, y=0.9876),
    Action(name="type", text="hello 'world' \"quoted\"\nnew line"),
    Action(name="press", key="Enter"),
    Action(name="press", key="Control+a"),
    Action(name="press", key="Shift+Tab"),
    Action(name="press", key="ArrowDown"),
    Action(name="scroll", dx=0.0, dy=0.5),
    Action(name="scroll", dx=0.0, dy=-0.25),
    Action(name="scroll", dx=0.3, dy=0.0),
    Action(name="drag", x=0.1, y=0.2, x2=0.8, y2=0.9),
    Action(name="select", x=0.4, y=0.6, text="Sweden"),
    Action(name="navigate", text="http://localhost:8000/cart?x=1"),
    Action(name="go_back"),
    Action(name="answer", text="$1,000.00"),
    Action(name="done"),
]


def test_every_action_name_is_covered():
    from typing import get_args

    from synth.schema import ActionName

    assert {a.name for a in EVERY_KIND} == set(get_args(ActionName))


@pytest.mark.parametrize("action", EVERY_KIND, ids=lambda a: f"{a.name}")
def test_round_trip(action):
    text = to_aguvis(action)
    assert from_aguvis(text) == action, text
    assert to_aguvis(from_aguvis(text)) == text


def test_aguvis_shapes():
    assert to_aguvis(Action(name="click", x=0.3125, y=0.7102)) == "pyautogui.click(x=0.3125, y=0.7102)"
    assert to_aguvis(Action(name="type", text="bob")) == "pyautogui.write(message='bob')"
    assert to_aguvis(Action(name="press", key="Control+a")) == "pyautogui.hotkey(keys=['ctrl', 'a'])"
    assert to_aguvis(Action(name="answer", text="42")) == "answer(text='42')"


def test_element_id_and_target_do_not_change_the_text():
    a = Action(name="click", x=0.5, y=0.5, element_id=7)
    assert to_aguvis(a) == "pyautogui.click(x=0.5, y=0.5)"


def test_positional_and_alias_forms():
    assert from_aguvis("pyautogui.click(0.2, 0.3)") == Action(name="click", x=0.2, y=0.3)
    assert from_aguvis("pyautogui.click(x=0.2, y=0.3, clicks=2)").name == "double_click"
    assert from_aguvis("pyautogui.typewrite('hi')") == Action(name="type", text="hi")
    assert from_aguvis("pyautogui.press('enter')") == Action(name="press", key="Enter")


@pytest.mark.parametrize(
    "text, message",
    [
        ("click the button", "not valid Python"),
        ("os.system('rm -rf /')", "unknown function"),
        ("pyautogui.click(x=__import__('os'), y=1)", "literal arguments"),
        ("pyautogui.click(x=400, y=300)", "fractions of the screenshot"),
        ("pyautogui.click(x=0.1)", "needs x= and y="),
        ("pyautogui.write(message=3)", "string message="),
        ("pyautogui.press(keys='hyperspace')", "unknown key"),
        ("pyautogui.click(x=0.1, y=0.1); pyautogui.click(x=0.2, y=0.2)", "exactly one"),
        ("", "no action call"),
    ],
)
def test_parse_errors_say_what_is_wrong(text, message):
    with pytest.raises(ActionParseError, match=message):
        from_aguvis(text)
