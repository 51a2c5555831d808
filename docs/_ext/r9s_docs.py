"""Sphinx glue for the r9s_async docs: public-name references, and a completeness check.

- attrs writes a factory default as ``NOTHING`` in signatures; it is shown as ``...``.
- Type aliases written as strings in private modules are evaluated with the package's names.
- Type hints name the private module a class lives in (``r9s_async._models.UsageReport``);
  references to those resolve to the public name (``r9s_async.UsageReport``).
- The build fails (a warning, and warnings are errors) when a name in ``r9s_async.__all__`` or
  ``r9s_async.testing.__all__`` is missing from the reference, or when a sub-command of the
  ``r9s-usage`` command has no ``--help`` section on the CLI reference page.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import re
import sys
import typing
from typing import Any

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging

logger = logging.getLogger(__name__)

PUBLIC_MODULES = ("r9s_async", "r9s_async.testing")
CLI_PAGE = "reference/cli"
CLI_HELP = "python -m r9s_async {command} --help"


def public_target(target: str) -> str | None:
    """``r9s_async._models.UsageReport`` -> ``r9s_async.UsageReport``; ``None`` if not private."""
    parts = target.split(".")
    if parts[0] != "r9s_async":
        return None
    for index, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:index] + parts[index + 1 :])
    return None


def resolve_private(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.Element
) -> nodes.Element | None:
    if node.get("refdomain") != "py":
        return None
    target = public_target(node["reftarget"])
    if target is None:
        return None
    domain = env.get_domain("py")
    fromdoc = node.get("refdoc", "")
    result: nodes.Element | None = domain.resolve_xref(
        env, fromdoc, app.builder, node["reftype"], target, node, contnode
    )
    return result


def hide_attrs_factories(
    app: Sphinx,
    what: str,
    name: str,
    obj: object,
    options: object,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str | None, str | None] | None:
    """attrs shows a ``field(factory=...)`` default as ``NOTHING``; show ``...`` (has a default)."""
    if signature is None or "NOTHING" not in signature:
        return None
    return re.sub(r"\bNOTHING\b", "...", signature), return_annotation


def evaluate_string_aliases(app: Sphinx, obj: object, bound_method: bool) -> None:
    """Let autodoc resolve type aliases that a private module defines as strings.

    A function's annotations are evaluated in its own module's namespace; an alias written as
    a string (``X: TypeAlias = "A | B"``) names things only its defining module imports, so
    autodoc would give up on the whole signature. Evaluate such annotations with every
    ``r9s_async`` module's names in scope instead.
    """
    function = getattr(obj, "__func__", obj)
    module = getattr(function, "__module__", None) or ""
    if not module.startswith("r9s_async") or not inspect.isfunction(function):
        return
    try:
        typing.get_type_hints(function)
    except NameError:
        namespace: dict[str, Any] = {}
        aliases: list[str] = []
        for name, loaded in list(sys.modules.items()):
            if name.startswith("r9s_async") and loaded is not None:
                namespace.update(vars(loaded))
                declared = getattr(loaded, "__annotations__", {})
                aliases += [n for n, kind in declared.items() if "TypeAlias" in str(kind)]
        for alias in aliases:
            if isinstance(namespace.get(alias), str):
                namespace[alias] = eval(namespace[alias], namespace)
        namespace.update(vars(sys.modules[module]))
        # Optional packages imported only for annotations (``-> pandas.DataFrame``).
        for optional in ("pandas",):
            with contextlib.suppress(ImportError):
                namespace.setdefault(optional, importlib.import_module(optional))
        for alias in aliases:
            if isinstance(namespace.get(alias), str):
                namespace[alias] = eval(namespace[alias], namespace)
        function.__annotations__ = typing.get_type_hints(function, globalns=namespace)


def documented_names(env: BuildEnvironment) -> set[str]:
    objects: dict[str, Any] = env.get_domain("py").objects  # type: ignore[attr-defined]
    return set(objects)


def cli_commands() -> list[str]:
    """The sub-commands of the real ``r9s-usage`` parser."""
    from r9s_async import _cli

    parser = _cli.build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


def check_complete(app: Sphinx, env: BuildEnvironment) -> None:
    documented = documented_names(env)
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            if f"{module_name}.{name}" not in documented:
                logger.warning(
                    "public name %s.%s is missing from the API reference",
                    module_name,
                    name,
                    type="r9s",
                    subtype="reference",
                )
    if CLI_PAGE not in env.found_docs:
        logger.warning("the CLI reference page %s is missing", CLI_PAGE, type="r9s")
        return
    page = env.doc2path(CLI_PAGE).read_text(encoding="utf-8")
    for command in cli_commands():
        wanted = CLI_HELP.format(command=command)
        if wanted not in page:
            logger.warning(
                "r9s-usage %s is not on the CLI reference page: add `%s` to %s",
                command,
                wanted,
                env.doc2path(CLI_PAGE),
                type="r9s",
                subtype="cli",
            )


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("missing-reference", resolve_private)
    app.connect("env-check-consistency", check_complete)
    app.connect("autodoc-process-signature", hide_attrs_factories)
    app.connect("autodoc-before-process-signature", evaluate_string_aliases)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
