"""The one exception for a bad configuration, and the helpers that word its messages.

The standard library only: every layer (the command line before Ray and Lightning are imported, the Ray-free
``lightning`` package, ``tune``) imports it at module level. ``torchmate_ray.lightning`` re-exports ConfigError
for the users of its API."""

from __future__ import annotations

import difflib
from typing import Iterable


class ConfigError(ValueError):
    """A configuration value that cannot be used, with where it sits in the config.

    ``str(err)`` reads ``<key.path>: <what is wrong>; <how to fix it>``, e.g.
    ``optimizer.name: unknown optimizer 'Adamm' in torch.optim; did you mean 'Adam'?``.
    """

    def __init__(self, key_path: str, message: str):
        super().__init__(f"{key_path}: {message}" if key_path else message)
        self.key_path = key_path
        self.message = message


def join_path(*parts: object) -> str:
    """``join_path("model", "cfg", 0)`` -> ``"model.cfg.0"``; empty parts are skipped."""
    return ".".join(str(part) for part in parts if part != "")


def suggest(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'Adam'?"`` for the closest choice (case ignored), or ``""`` when nothing is close."""
    choices = list(choices)
    by_lower = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f"; did you mean '{by_lower[close[0]]}'?" if close else ""


def describe(value: object) -> str:
    """A short, type-revealing rendering of a config value for error messages."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"
