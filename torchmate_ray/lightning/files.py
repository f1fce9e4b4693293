"""Config files: a Python file that defines ``config``, and ``--set key.path=value`` overrides."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from torchmate_ray.errors import ConfigError, describe
from torchmate_ray.lightning.build import copy_config


def load_python_file(path: str | Path) -> ModuleType:
    """Run the Python file at ``path`` as a module (importable by name afterwards, so its classes pickle).

    Raises:
        ConfigError: when the file is missing, has a syntax error, or fails while running.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), "no such file; check the path")
    name = module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.resolve().parent))  # lets the file import its neighbours
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:
        raise ConfigError(f"{path}:{err.lineno}", f"syntax error: {err.msg}; fix the file") from err
    except ConfigError:
        raise
    except Exception as err:
        line = _failing_line(err, path)
        raise ConfigError(f"{path}{line}", f"running the file failed: {type(err).__name__}: {err}; fix the file") from err
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def module_name(path: str | Path) -> str:
    """The name under which ``load_python_file`` registers the file's module in ``sys.modules``."""
    return "torchmate_config_" + re.sub(r"\W", "_", Path(path).stem)


def load_config_file(path: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The ``config`` a Python file defines, as plain dicts, with ``overrides`` applied."""
    module = load_python_file(path)
    if not hasattr(module, "config"):
        raise ConfigError(str(path), "defines no 'config'; add config = {...} (a dict or DotMap)")
    config = copy_config(module.config)
    if not isinstance(config, Mapping):
        raise ConfigError(f"{path}: config", f"expected a dict or DotMap, got {describe(module.config)}; "
                          f"define config = {{...}}")
    return apply_overrides(config, overrides)


def apply_overrides(cfg: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``cfg`` with each ``"key.path=value"`` set; values are Python literals, else strings.

    Example:
        >>> apply_overrides({"optimizer": {"cfg": {"lr": 0.1}}}, ["optimizer.cfg.lr=1e-3"])
        {'optimizer': {'cfg': {'lr': 0.001}}}
    """
    cfg = copy_config(cfg)
    for item in overrides:
        key_path, sep, text = item.partition("=")
        if not sep or not key_path:
            raise ConfigError("--set", f"'{item}' is not KEY.PATH=VALUE; write e.g. --set optimizer.cfg.lr=0.01")
        set_path(cfg, key_path.strip(), parse_value(text.strip()))
    return cfg


def parse_value(text: str) -> Any:
    """``"0.1"`` -> 0.1, ``"[1, 5]"`` -> [1, 5], ``"True"`` -> True, ``"Adam"`` -> ``"Adam"``."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def set_path(cfg: dict[str, Any], key_path: str, value: Any) -> None:
    """Set ``cfg[a][b][0] = value`` for ``key_path="a.b.0"``; missing dict keys are created."""
    parts = key_path.split(".")
    node: Any = cfg
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(where, f"is not an index of a list of {len(node)}; use 0..{len(node) - 1}")
            index: Any = int(part)
        elif isinstance(node, dict):
            index = part
            if not last and part not in node:
                node[part] = {}
        else:
            raise ConfigError(where, f"cannot set a key inside {describe(node)}; check the key path")
        if last:
            node[index] = value
        else:
            node = node[index]


def _failing_line(err: Exception, path: Path) -> str:
    frames = [tb for tb in _walk(err.__traceback__) if Path(tb.tb_frame.f_code.co_filename) == path]
    return f":{frames[-1].tb_lineno}" if frames else ""


def _walk(tb: Any) -> list[Any]:
    frames = []
    while tb is not None:
        frames.append(tb)
        tb = tb.tb_next
    return frames
