"""The shape the code keeps (ruff holds the parameters, `PLR0913` in pyproject.toml): no function in landmark/ or
stages/ with a body over 60 lines, so each reads on one screen; the command line's parser, a list of flags, has 80."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
LONGEST = 60
LONGER = {("landmark/cli.py", "build_parser"): 80}


def body_lines(function: ast.FunctionDef) -> int:
    """The lines of a function's body, its docstring left out."""
    body = function.body
    documented = isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and len(body) > 1
    return function.end_lineno - body[1 if documented else 0].lineno + 1


def functions():
    for path in sorted([*ROOT.glob("landmark/**/*.py"), *ROOT.glob("stages/*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield str(path.relative_to(ROOT)), node


def test_no_function_body_runs_over_60_lines():
    shapes = list(functions())
    assert len(shapes) > 300  # every module was read
    long = [
        f"{path}:{node.lineno} {node.name}: {body_lines(node)} lines"
        for path, node in shapes
        if body_lines(node) > LONGER.get((path, node.name), LONGEST)
    ]
    assert not long, long


def test_body_lines_counts_the_body_without_its_docstring():
    documented, plain = ast.parse(
        'def f():\n    """Doc\n    string."""\n    a = 1\n    return a\n\ndef g():\n    pass\n'
    ).body
    assert (body_lines(documented), body_lines(plain)) == (2, 1)


@pytest.mark.parametrize("limit", sorted(set(LONGER.values())))
def test_the_longer_allowances_name_functions_that_exist(limit):
    named = {(path, node.name) for path, node in functions()}
    assert {key for key, value in LONGER.items() if value == limit} <= named
