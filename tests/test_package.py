"""The package as a whole: its import graph goes one way, and a built wheel works on its own."""

import ast
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import bayescale

PACKAGE = Path(bayescale.__file__).resolve().parent
REPO = PACKAGE.parent
CAPABILITIES = ("curves", "sweep", "bound")
TOP = ("bayescale.registry", "bayescale.compare", "bayescale.demo")


def module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


MODULES = module_names()


def layer(module: str) -> str:
    """facade, core, a capability's name, top or cli."""
    parts = module.split(".")
    if module == "bayescale":
        return "facade"
    if parts[1] == "core":
        return "core"
    if module == "bayescale.cli" or (parts[1] in CAPABILITIES and parts[-1] == "cli"):
        return "cli"
    if parts[1] in CAPABILITIES:
        return parts[1]
    if module in TOP:
        return "top"
    raise AssertionError(f"{module}: in no layer; place it in core, a capability or the top layer")


def allowed(source: str, target: str) -> bool:
    src, dst = layer(source), layer(target)
    if dst == "facade":
        return src == "facade"
    return {
        "core": dst == "core",
        "top": dst in ("core", "top", *CAPABILITIES),
        "cli": True,
        "facade": True,
    }.get(src, dst in ("core", src))  # a capability: core and itself


def imports_of(module: str) -> list[tuple[str, int, bool]]:
    """(imported bayescale module, line, inside a function) for every import in ``module``."""
    path = REPO / Path(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    tree = ast.parse(path.read_text())
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, in_function) for a in child.names if a.name.split(".")[0] == "bayescale")
            elif isinstance(child, ast.ImportFrom) and child.module and child.module.split(".")[0] == "bayescale":
                for alias in child.names:
                    candidate = f"{child.module}.{alias.name}"
                    found.append((candidate if candidate in MODULES else child.module, child.lineno, in_function))
            visit(child, nested)

    visit(tree, False)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def test_every_module_has_a_layer_and_no_import_goes_against_the_layers():
    wrong = [f"{source}:{line} imports {target} ({layer(source)} → {layer(target)})"
             for source, edges in GRAPH.items() for target, line, _ in edges if not allowed(source, target)]
    assert wrong == []


def test_the_layer_rules_can_fail():
    assert not allowed("bayescale.core.fit", "bayescale.curves.fit")
    assert not allowed("bayescale.sweep.surface", "bayescale.bound.final")
    assert not allowed("bayescale.curves.fit", "bayescale.registry")
    assert not allowed("bayescale.registry", "bayescale.cli")
    assert allowed("bayescale.sweep.cli", "bayescale.registry")


def test_no_package_module_is_imported_inside_a_function():
    inside = [f"{source}:{line} imports {target}" for source, edges in GRAPH.items()
              for target, line, in_function in edges if in_function]
    assert inside == []


def test_the_import_graph_has_no_circle():
    state: dict[str, str] = {}

    def walk(module, path):
        state[module] = "open"
        for target, _, _ in GRAPH.get(module, []):
            if target == module:
                continue
            if state.get(target) == "open":
                raise AssertionError("import circle: " + " → ".join(path[path.index(target):] + [target]))
            if target not in state:
                walk(target, path + [target])
        state[module] = "done"

    for module in MODULES:
        if module not in state:
            walk(module, [module])


def test_every_module_imports_in_a_fresh_interpreter():
    script = ("import importlib, sys\n"
              "for name in sys.argv[1:]:\n"
              "    importlib.import_module(name)\n")
    result = subprocess.run([sys.executable, "-c", script, *MODULES], capture_output=True, text=True,
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-2000:]


def test_facade_names_are_public():
    assert set(bayescale.__all__) >= {"read_curves", "read_sweep", "read_runs", "from_spec", "load", "register",
                                      "schedules", "DataError", "FitFileError", "SamplingWarning", "__version__"}
    for name in bayescale.__all__:
        assert hasattr(bayescale, name), name


def run(args, **kwargs):
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{args[:3]} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_a_built_wheel_runs_the_demo_and_a_fit_in_a_fresh_environment(tmp_path):
    """Build the wheel, install it alone in a new venv that borrows this environment's
    dependencies (a .pth line, nothing downloaded), and run the CLI from elsewhere."""
    wheels, venv, work = tmp_path / "wheels", tmp_path / "venv", tmp_path / "work"
    source = tmp_path / "source"  # a copy, so that the build leaves nothing in the repository
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv", "*.egg-info", "build", "__pycache__",
                                                                "notebooks", "benchmarks", ".ci-venv"), symlinks=True)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, source])
    wheel, = wheels.glob("bayescale-*.whl")
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel])
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    (site / "outer_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = run([python, "-c", "import bayescale; print(bayescale.__file__)"], cwd=work, env=env).strip()
    assert Path(where).is_relative_to(venv), where
    bayescale_cli = venv / "bin" / "bayescale"
    demo = json.loads(run([bayescale_cli, "demo", "--quick", "--out", work / "demo"], cwd=work, env=env))
    assert demo["held_out"]["n_points"] == 400 and Path(demo["data"]).is_relative_to(venv)
    fit = json.loads(run([bayescale_cli, "curves", "fit", demo["data"], "--law", "multipower", "--runs",
                          "constant_10k,cosine_10k,wsd_10k", "--warmup-steps", "500", "--draws", "100", "--tune", "100",
                          "--chains", "1", "--out", work / "fit.nc"], cwd=work, env=env))
    assert fit["law"] == "multipower" and fit["n_points"] == 300 and (work / "fit.nc").is_file()
