"""The house rules of difprog's code, checked on every module of the package:

- no module imports another package's private module or private name (`difprog.layers._layer`
  from `difprog.interop`, `_as_struct` from outside `difprog.layers`);
- every public module declares `__all__`;
- a module stays under 600 lines and a function under 60 (its docstring not counted: a long
  docstring is documentation, not code), except the few listed below, each with its reason.
"""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "difprog"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60

# path relative to difprog/ (or "path:function") -> why it may be longer
LONG_ALLOWED: dict[str, str] = {}


def _code_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """A function's lines from its `def` to its end, less its docstring's."""
    lines = function.end_lineno - function.lineno + 1
    first = function.body[0]
    if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def _modules() -> list[pathlib.Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(path: pathlib.Path) -> str:
    """The package a module belongs to: `difprog.layers` for difprog/layers/_layer.py."""
    name = _name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _private_owner(module: str) -> str | None:
    """The package that owns `module`'s first private part, or None if it has none."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def _inside(package: str, owner: str) -> bool:
    return package == owner or package.startswith(owner + ".")


def _imports(path: pathlib.Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) for each import of a difprog module in `path`."""
    package = _package(path)
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.append((node.lineno, base, [a.name for a in node.names]))
    return [item for item in found if item[1] == "difprog" or item[1].startswith("difprog.")]


def test_no_module_imports_another_packages_private_module_or_name():
    bad = []
    for path in _modules():
        package = _package(path)
        for line, module, names in _imports(path):
            owner = _private_owner(module)
            if owner is not None and not _inside(package, owner):
                bad.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}")
            for name in names:
                private = name.startswith("_") and not name.startswith("__")
                if private and _private_owner(module) is None and not _inside(package, module):
                    bad.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}.{name}")
    assert not bad, "private imports across packages:\n" + "\n".join(bad)


def test_the_rule_sees_a_private_import_across_packages():
    """The checker itself: a cross-package private import is seen, an inner one is not."""
    assert _private_owner("difprog.layers._layer") == "difprog.layers"
    assert not _inside("difprog.interop", "difprog.layers")
    assert _inside("difprog.layers", "difprog.layers")
    assert _inside("difprog.layers.sub", "difprog.layers")
    assert _private_owner("difprog.layers") is None


def test_every_public_module_declares_all():
    missing = [str(path.relative_to(PACKAGE)) for path in _modules()
               if not any(part.startswith("_") and part != "__init__.py"
                          for part in path.relative_to(PACKAGE).parts)
               and path.name != "__main__.py"
               and "__all__" not in path.read_text()]
    assert not missing, f"public modules without __all__: {missing}"


def test_modules_stay_short():
    long = {}
    for path in _modules():
        key = str(path.relative_to(PACKAGE))
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES and key not in LONG_ALLOWED:
            long[key] = lines
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}; split them by concept"


def test_functions_fit_on_a_screen():
    long = {}
    for path in _modules():
        rel = str(path.relative_to(PACKAGE))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = _code_lines(node)
                if lines > MAX_FUNCTION_LINES and f"{rel}:{node.name}" not in LONG_ALLOWED:
                    long[f"{rel}:{node.name}"] = lines
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_every_allowance_is_still_needed():
    for entry in LONG_ALLOWED:
        path, _, function = entry.partition(":")
        source = (PACKAGE / path).read_text()
        if not function:
            assert len(source.splitlines()) > MAX_MODULE_LINES, f"{entry} is short: drop it"
            continue
        lengths = [_code_lines(n) for n in ast.walk(ast.parse(source))
                   if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                   and n.name == function]
        assert lengths and max(lengths) > MAX_FUNCTION_LINES, f"{entry} is short: drop it"
