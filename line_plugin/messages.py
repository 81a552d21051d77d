"""
Words shared by the application's messages, torch-free (the command line imports them before
it parses its arguments).
"""

from typing import Optional


def plural(n: Optional[int], noun: str) -> str:
    """:return: ``"1 image"``, ``"2 images"``"""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def first_line(error: BaseException) -> str:
    """:return: the first line of an error's message (a :class:`KeyError` without quotes)"""
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    lines = str(text).strip().splitlines()
    return lines[0] if lines else type(error).__name__
