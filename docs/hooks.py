"""MkDocs hook for the API reference (mkdocs.yml `hooks:`): writes the gates catalogue.

The gates are objects (`Gate` records), not functions, so mkdocstrings' static analysis sees
only `add = register(...)`. At build time this hook imports `difprog.gates` and replaces the
marker in gates.md with one entry per gate of `difprog.gates.ALL` (its signature and its
docstring: the forward's, which states the derivative), grouped by the module that registers
it, and a `::: difprog.gates` directive for the rest of `difprog.gates.__all__`. Nothing
generated is committed, so the page cannot go stale.
"""

from __future__ import annotations

import dataclasses
import inspect
import re

import griffe

MARKER = "<!-- difprog:gates -->"


def _catalogue() -> str:
    from difprog import gates

    helpers = [name for name in gates.__all__ if name not in gates.ALL]
    lines = ["::: difprog.gates", "    options:", f"      members: {helpers!r}", "",
             "## Every gate", "",
             "`difprog.gates.ALL` in its order, grouped by the module that writes and registers "
             "each gate. Each is called like the jax.numpy function it stands for, with the "
             "signature shown; its docstring states the derivative its rules compute. Every "
             "gate is a `Gate`: `forward`, `backward`, `tangent` and `with_rules` as above.", ""]
    family = None
    for name, gate in gates.ALL.items():
        module = gate.forward.__module__
        if module != family:
            family = module
            label = module.removeprefix("difprog.gates.")
            lines += [f"### {label} {{ #{module} }}", ""]
        doc = inspect.cleandoc(gate.__doc__ or "").replace("```", "'''")
        lines += [f"#### {name} {{ #difprog.gates.{name} data-toc-label=\"{name}\" }}", "",
                  f"`difprog.gates.{name}{gate.signature}`", ""]
        if doc:
            lines += ["```text", doc, "```", ""]
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, _catalogue())
    return markdown


# --- griffe extensions (mkdocs.yml, mkdocstrings' python `extensions:`)

_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Reads a Google-style `Example:` header as `Examples:`, as Napoleon does: griffe takes the
    singular for an admonition and renders its doctest as Markdown (`>>>` becomes nested quotes,
    `x["a"]["b"]` a reference link); the plural is its examples section, shown as code."""

    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        docstring = obj.docstring
        if docstring is not None and "Example:" in docstring.value:
            docstring.value = _EXAMPLE.sub(r"\1Examples:", docstring.value)


def _default(value) -> str:
    """A default as it reads in a signature, the same on every build (no object addresses)."""
    if callable(value) and hasattr(value, "__qualname__"):
        return value.__qualname__
    return repr(value)


class DataclassSignatures(griffe.Extension):
    """Gives every dataclass griffe did not see as one its `__init__`, from the class itself:
    a layer is a frozen dataclass made by `Layer.__init_subclass__`, which static analysis does
    not run, so `Dense` would show no signature and its Args no defaults."""

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        if pkg.name == "difprog":
            self._visit(pkg, set())

    def _visit(self, obj, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        for member in list(obj.members.values()):
            if not member.is_alias and (member.is_module or member.is_class):
                self._visit(member, seen)
        if obj.is_class and "__init__" not in obj.members:
            try:
                runtime = griffe.dynamic_import(obj.path)
            except ImportError:
                return
            if not (isinstance(runtime, type) and dataclasses.is_dataclass(runtime)):
                return
            parameters = [griffe.Parameter("self",
                                           kind=griffe.ParameterKind.positional_or_keyword)]
            for p in inspect.signature(runtime).parameters.values():
                parameters.append(griffe.Parameter(
                    p.name, kind=griffe.ParameterKind[p.kind.name.lower()],
                    default=None if p.default is p.empty else _default(p.default)))
            obj.set_member("__init__", griffe.Function(
                "__init__", lineno=obj.lineno, endlineno=obj.lineno, parent=obj,
                parameters=griffe.Parameters(*parameters), returns="None"))
            obj.labels.add("dataclass")


class NotebookDisplay(griffe.Extension):
    """Counts `_repr_html_` as public (`filters: public` hides names with one underscore): it is
    how a record shows itself in a notebook, which the design names (`Explanation._repr_html_`)."""

    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.name == "_repr_html_":
            obj.public = True


class RedecoratedClasses(griffe.Extension):
    """Keeps a class documented as the class when its module re-decorates it under its own name
    (`Layer = dataclass_transform(...)(dataclasses.dataclass(...)(Layer))`): griffe would take
    the assignment for a plain attribute and drop the class's methods (`Layer.init`, ...)."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, griffe.Class] = {}

    def on_class_instance(self, *, cls: griffe.Class, **kwargs) -> None:
        self._classes[cls.path] = cls

    def on_attribute_instance(self, *, attr: griffe.Attribute, **kwargs) -> None:
        cls = self._classes.get(attr.path)
        if (cls is not None and cls.parent is attr.parent and isinstance(attr.value, griffe.Expr)
                and re.search(rf"\({re.escape(attr.name)}\)+$", str(attr.value))):
            attr.parent.set_member(attr.name, cls)
