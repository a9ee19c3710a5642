"""One shape for every extension point: data sets, graders, rewards, algorithms, generation backends.

A `Registry` is a table of named entries that

- refuses a name twice (`DuplicateNameError`, a ValueError naming the module that registered it first);
- answers a name it does not know with one line that lists the names it does (`UnknownNameError`, a
  ConfigError and a KeyError);
- finds its entries itself: given a package, it imports the package's modules when a name is missing,
  so a new module there registers without an import list to edit. The module named like the entry is
  tried first (`get_algorithm("ppo")` imports algorithms/ppo.py alone); the whole package only when
  that does not register the name, or when every name is asked for (`names()`, iteration, `len`).
  Modules whose name starts with `_` are left out.

A registering module keeps its heavy or optional imports (torch, vLLM, a task library) inside the
functions that need them where it can: listing the names imports every module of the package.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from reasoning_rl.errors import UnknownNameError

__all__ = ["DuplicateNameError", "Registry", "UnknownNameError"]

T = TypeVar("T")


class DuplicateNameError(ValueError):
    """Two registrations of one name: the second would silently change what the name means, depending on
    which module happened to be imported last."""


class Registry(Generic[T]):
    """Named entries of one kind ("grader", "dataset", ...).

    `register(name, **meta)` is the decorator modules use; the object it decorates is returned as it is.
    With `entry`, the registry stores `entry(name, obj, **meta)` instead of the object (a data set's
    loader becomes a DatasetSpec); without it, `meta` must be empty.
    """

    def __init__(self, kind: str, *, package: str | None = None, entry: Callable[..., T] | None = None):
        self.kind = kind
        self.package = package
        self._entry = entry
        self._entries: dict[str, tuple[T, str | None]] = {}  # name -> (entry, the module that registered it)
        self._discovering = threading.local()

    # ---- registering ----

    def register(self, name: str, **meta: Any) -> Callable[[Any], Any]:
        self._refuse_taken(name)  # at once, so `register(name)` alone fails for a taken name

        def decorator(obj):
            if self._entry is not None:
                value = self._entry(name, obj, **meta)
            elif meta:
                raise TypeError(f"the {self.kind} registry takes no options ({', '.join(meta)})")
            else:
                value = obj
            self.add(name, value, module=getattr(obj, "__module__", None))
            return obj

        return decorator

    def add(self, name: str, value: T, *, module: str | None = None) -> T:
        """Register `value` itself (what `register` does once it has built the entry)."""
        self._refuse_taken(name)
        self._entries[name] = (value, module)
        return value

    def _refuse_taken(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries:
            where = self._entries[name][1]
            raise DuplicateNameError(f"{self.kind} {name!r} is already registered"
                                     f"{f' (by {where})' if where else ''}; choose another name")

    # ---- looking up ----

    def get(self, name: str, *, module: str | None = None) -> T:
        """The entry registered as `name`, found by discovery if need be; `module` is imported first
        (an entry defined outside the package, named by its config)."""
        if module:
            importlib.import_module(module)
        if name not in self._entries:
            self._discover(name)
        if name not in self._entries:
            raise self.unknown(name)
        return self._entries[name][0]

    __getitem__ = get

    def unknown(self, *names: str) -> UnknownNameError:
        """The one-line error for names this registry does not know, listing those it does."""
        listed = ", ".join(map(repr, names))
        return UnknownNameError(f"unknown {self.kind}{'s' if len(names) > 1 else ''} {listed}; "
                                f"known {self.kind}s: {', '.join(self.names()) or '(none)'}")

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if name not in self._entries:
            self._discover(name)
        return name in self._entries

    def names(self) -> list[str]:
        """Every registered name, sorted (all of the package's modules imported first)."""
        self._discover()
        return sorted(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(name, self._entries[name][0]) for name in self.names()]

    def values(self) -> list[T]:
        return [value for _, value in self.items()]

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, package={self.package!r}, names={sorted(self._entries)})"

    # ---- discovery ----

    def _discover(self, name: str | None = None) -> None:
        """Import the package's modules: the one called `name` first, then (if still missing) all."""
        if self.package is None:
            return
        if getattr(self._discovering, "active", False):  # a module being imported looks a name up:
            return  # it sees what is registered so far
        self._discovering.active = True
        try:
            if name is not None and name.isidentifier() and not name.startswith("_"):
                self._import(f"{self.package}.{name}", only_if_found=True)
                if name in self._entries:
                    return
            for module in self._modules():
                self._import(module)
        finally:
            self._discovering.active = False

    def _modules(self) -> Iterable[str]:
        package = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(getattr(package, "__path__", [])):
            if not info.name.startswith("_"):
                yield f"{self.package}.{info.name}"

    @staticmethod
    def _import(module: str, only_if_found: bool = False) -> None:
        if only_if_found and importlib.util.find_spec(module) is None:
            return
        importlib.import_module(module)
