"""The experiment's small JSON files (summary.json, params.json, budget.jsonl, confirm.jsonl), read by the
driver, the results side and the command's start-up alike, and the one way every file of an experiment is
written (:func:`written_whole`): so this module imports neither Ray nor Lightning."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def written_whole(path: Path) -> Iterator[Path]:
    """A file beside ``path`` for the block to write (``<name>.partial``), renamed to ``path`` once the block ends:
    a reader, a resume or a report never finds ``path`` half-written, whenever the writer is killed. Where the
    block raises, the partial file is removed and ``path`` keeps what it held."""
    partial = path.with_name(path.name + ".partial")
    try:
        yield partial
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)


def write_whole(path: Path, data: str | bytes) -> None:
    """``data`` in ``path``, whole or not at all (:func:`written_whole`)."""
    with written_whole(path) as partial:
        if isinstance(data, bytes):
            partial.write_bytes(data)
        else:
            partial.write_text(data)


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; {} where the file is missing, cut short, or holds no object."""
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}
