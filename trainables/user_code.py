"""The user's own code, named by import path: `"pkg.module:function"`.

Three config keys may name a function instead of a registered name (README, "Your own model"):
`model` (a builder `(in_shape, num_outputs) -> nn.Module`), `dataset` (a loader returning the
tensors the training loop uses, `trainables.tensor_data.as_tensor_data`) and `trainable` (a
whole training function, `trainables.own_loop`). This module resolves such a path to the
callable, passes the user's fixed hyperparameters (`params:`) to the arguments a callable
names, and finds the folder or file Ray must ship to every worker (`ray_modules`).

Every problem is an `ImportPathError` (a ValueError) whose message names the path, what is
wrong and the fix: the sweep prints it as one line before Ray starts.

Importing a path runs that module's code, here and on every worker: by design, as with any
training script. Nothing here imports torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
import sysconfig
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
IMPORT_PATH = re.compile(rf"^{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*$")
PROJECT_PACKAGES = ("sweep", "trainables", "analysis")  # installed on every node already


class ImportPathError(ValueError):
    """An import path that does not lead to a usable callable: one line with the fix."""


def is_import_path(name: str) -> bool:
    """`"pkg.module:function"` rather than a registered name (a colon marks it)."""
    return ":" in name


def check_syntax(key: str, path: str) -> None:
    """Raise ImportPathError unless `path` reads `package.module:function` (no import)."""
    if not IMPORT_PATH.match(path):
        raise ImportPathError(
            f"{key} '{path}' is not an import path; write it as 'package.module:function' "
            "(dotted module, one colon, then the function's name)"
        )


def resolve(key: str, path: str) -> Callable[..., Any]:
    """Import `package.module:function` and return the callable it names."""
    check_syntax(key, path)
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        missing = err.name or module_name
        if missing == module_name or module_name.startswith(f"{missing}."):
            raise ImportPathError(
                f"{key} '{path}': no module named '{missing}' on the Python path; run the "
                "sweep from the folder that holds it (or install it), or fix the path"
            ) from None
        raise ImportPathError(
            f"{key} '{path}': importing '{module_name}' failed: it imports '{missing}', "
            "which is not installed; install it (on every node of a cluster)"
        ) from None
    except Exception as err:  # noqa: BLE001 - any error in the user's module, in one line
        raise ImportPathError(
            f"{key} '{path}': importing '{module_name}' failed: {one_line(err)}"
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n))]
            raise ImportPathError(
                f"{key} '{path}': module '{module_name}' has no '{attr}'"
                + (f"; it has {', '.join(sorted(names)[:8])}" if names else "")
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise ImportPathError(
            f"{key} '{path}' is a {type(obj).__name__}, not a function; name a function "
            "(or a class) after the colon"
        )
    return obj


def accepted(fn: Callable[..., Any], names: Iterable[str]) -> set[str]:
    """Which of `names` `fn` takes as keyword arguments (all of them with a **kwargs)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: pass nothing
        return set()
    kinds = {p.name: p.kind for p in sig.parameters.values()}
    if inspect.Parameter.VAR_KEYWORD in kinds.values():
        return set(names)
    ok = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {n for n in names if kinds.get(n) in ok}


def call(fn: Callable[..., Any], *args: Any, offered: Mapping[str, Any]) -> Any:
    """`fn(*args, **the offered keywords it names)`: the user's params reach the functions
    whose signatures ask for them, e.g. `def build(in_shape, num_outputs, hidden=64)`."""
    return fn(*args, **{k: v for k, v in offered.items() if k in accepted(fn, offered)})


def check_takes_one_argument(key: str, path: str, fn: Callable[..., Any]) -> None:
    """A training function is called as `fn(trial)`."""
    try:
        inspect.signature(fn).bind(object())
    except TypeError:
        raise ImportPathError(
            f"{key} '{path}' cannot be called with one argument (the trial); define it as "
            "`def run(trial):` (see trainables.own_loop.Trial)"
        ) from None
    except ValueError:  # no signature to check
        pass


# ---------------------------------------------------------------------------- shipping
def _installed_roots() -> list[Path]:
    paths = sysconfig.get_paths()
    return [Path(paths[k]).resolve() for k in ("purelib", "platlib", "stdlib") if k in paths]


def code_location(path: str) -> Path | None:
    """The top-level package folder (or single-file module) that holds `path`'s module, when
    it must be shipped to the workers: not installed in the environment, not this project.
    Imports nothing: only finds the top-level module (`importlib.util.find_spec`)."""
    top = path.partition(":")[0].split(".")[0]
    if top in PROJECT_PACKAGES or top in sys.builtin_module_names:
        return None
    spec = importlib.util.find_spec(top)
    if spec is None:
        return None
    if spec.submodule_search_locations:
        locations = list(spec.submodule_search_locations)
        if len(locations) != 1:
            raise ImportPathError(
                f"'{path}': package '{top}' is split over {len(locations)} folders; Ray can "
                "ship only a package in one folder: add an __init__.py to it"
            )
        where = Path(locations[0]).resolve()
    elif spec.origin and spec.origin.endswith(".py"):
        where = Path(spec.origin).resolve()
    else:
        return None  # a compiled or frozen module: it comes with the environment
    if any(where.is_relative_to(root) for root in _installed_roots()):
        return None  # installed with pip: every node has the same environment
    return where


def ray_modules(paths: Iterable[str]) -> list[str]:
    """What Ray's runtime_env `py_modules` must ship so that every worker imports `paths`."""
    found = {code_location(p) for p in paths if p and is_import_path(p)}
    return sorted(str(p) for p in found if p is not None)


def folder_size(where: Path) -> int:
    """Bytes Ray would upload for one py_modules entry (caches and hidden files left out)."""
    if where.is_file():
        return where.stat().st_size
    total = 0
    for f in where.rglob("*"):
        parts = f.relative_to(where).parts
        if f.is_file() and not any(p == "__pycache__" or p.startswith(".") for p in parts):
            total += f.stat().st_size
    return total


def one_line(err: BaseException) -> str:
    """An exception as one line of at most 300 characters: `Type: message`."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}"[:300] if text else type(err).__name__
