"""What the installed generator plugins declare, read without importing them.

``madlab generators`` must answer in a fraction of a second, but importing the plugins means
importing torch, diffusers and normflows (seconds). A plugin's entry point names a module and a
class; this module finds the module's source with :func:`importlib.util.find_spec` (which imports
parent packages only, never the module itself), parses it with :mod:`ast` and reads the class's
``name``, ``data_kinds`` and docstring first line. A module whose top-level imports name a
package that is not installed is reported as unloadable, as importing it would fail.

Written here rather than taken from a library: entry-point metadata carries no description, and
no packaging tool reads class attributes statically. Anything the static read cannot resolve
(a class built dynamically, attributes computed at import) is reported as ``?``; the registry,
which imports, stays the authority for running.
"""
from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

GROUP = "madlab.generators"
#: the entry-point group of each plugin kind (the command that lists it: ``madlab generators`` ...)
GROUPS = {"generators": "madlab.generators", "curators": "madlab.curators", "datasets": "madlab.datasets"}
#: the protocols' default (Generator and Curator alike), for a class and bases that do not set ``data_kinds``
DEFAULT_KINDS = ("vector",)
PROTOCOL_BASES = ("Generator", "Curator")


@dataclass(frozen=True)
class PluginInfo:
    """One ``madlab.generators`` entry point as declared in its source."""

    name: str
    target: str  # "module:Class"
    distribution: str | None
    data_kinds: tuple[str, ...] | None = None  # None: not readable statically
    summary: str = ""
    problem: str | None = None  # why the plugin cannot load, when that shows without importing it


def installed_plugins(group: str = GROUP) -> list[PluginInfo]:
    """Every entry point of ``group``, sorted by name, each read statically."""
    infos = []
    for ep in entry_points(group=group):
        dist = ep.dist.name if getattr(ep, "dist", None) is not None else None
        infos.append(read_plugin(ep.name, ep.value, dist))
    return sorted(infos, key=lambda info: info.name)


def read_plugin(name: str, target: str, distribution: str | None = None) -> PluginInfo:
    module, _, qualname = target.partition(":")
    try:
        tree, path = _parse_module(module)
    except LookupError as exc:
        return PluginInfo(name, target, distribution, problem=str(exc))
    missing = _missing_imports(tree, module)
    if missing:
        return PluginInfo(name, target, distribution, problem=f"ModuleNotFoundError: No module named {missing!r}")
    cls = _find_class(tree, qualname)
    if cls is None:
        return PluginInfo(name, target, distribution, problem=f"no class {qualname!r} in {path}")
    doc = (ast.get_docstring(cls) or "").strip().splitlines()
    return PluginInfo(name, target, distribution, _data_kinds(cls, tree, module), doc[0] if doc else "")


def _parse_module(module: str) -> tuple[ast.Module, Path]:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        raise LookupError(f"{type(exc).__name__}: {exc}") from None
    if spec is None:
        raise LookupError(f"ModuleNotFoundError: No module named {module!r}")
    if not spec.origin or not spec.origin.endswith(".py"):
        raise LookupError(f"no Python source for {module!r} ({spec.origin})")
    path = Path(spec.origin)
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), path
    except (OSError, SyntaxError, UnicodeDecodeError) as exc:
        raise LookupError(f"{type(exc).__name__}: {exc}") from None


def _missing_imports(tree: ast.Module, module: str) -> str | None:
    """The first top-level absolute import (outside try/if blocks) naming an uninstalled package."""
    for node in tree.body:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for full in names:
            top = full.split(".")[0]
            if top == "__future__" or top == module.split(".")[0]:
                continue
            try:
                if importlib.util.find_spec(top) is None:
                    return top
            except (ImportError, ValueError):
                return top
    return None


def _find_class(tree: ast.Module, qualname: str) -> ast.ClassDef | None:
    body = tree.body
    found = None
    for part in qualname.split("."):
        found = next((n for n in body if isinstance(n, ast.ClassDef) and n.name == part), None)
        if found is None:
            return None
        body = found.body
    return found


def _class_attr(cls: ast.ClassDef, attr: str) -> ast.expr | None:
    for node in cls.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == attr for t in node.targets):
            return node.value
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == attr:
            return node.value
    return None


def _data_kinds(cls: ast.ClassDef, tree: ast.Module, module: str, depth: int = 0) -> tuple[str, ...] | None:
    value = _class_attr(cls, "data_kinds")
    if value is not None:
        if isinstance(value, ast.Call) and len(value.args) == 1 and not value.keywords:
            value = value.args[0]  # frozenset({...})
        try:
            return tuple(sorted(ast.literal_eval(value)))
        except (ValueError, TypeError, SyntaxError):
            return None
    if depth > 4:
        return None
    for base in cls.bases:  # inherited: follow bases defined in this module or imported from a readable one
        base_name = base.id if isinstance(base, ast.Name) else base.attr if isinstance(base, ast.Attribute) else None
        if base_name in PROTOCOL_BASES:
            return DEFAULT_KINDS
        local = _find_class(tree, base_name) if base_name else None
        if local is not None:
            return _data_kinds(local, tree, module, depth + 1)
        source = _imported_from(tree, base_name, module) if base_name else None
        if source is not None:
            try:
                base_tree, _ = _parse_module(source)
            except LookupError:
                return None
            base_cls = _find_class(base_tree, base_name)
            if base_cls is not None:
                return _data_kinds(base_cls, base_tree, source, depth + 1)
    return None


def _imported_from(tree: ast.Module, name: str, module: str) -> str | None:
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name for a in node.names):
            if node.level == 0:
                return node.module
            package = module.split(".")
            # `from ._torch import X` inside package a.b (module a.b.c): a.b._torch
            parent = package[: len(package) - node.level] if len(package) > 1 else package
            return ".".join(parent + ([node.module] if node.module else []))
    return None
