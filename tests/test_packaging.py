"""The built wheel carries the twistd plugin, and a fresh environment finds it."""

import ast
import configparser
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from conftest import PROJECT_ROOT

import twisted

SOURCES = ["setup.cfg", "pyproject.toml", "README.rst", "twisted_spark", "twisted"]


def build_wheel(tmp_path: Path) -> Path:
    """Build the wheel the way ``pip install .`` does on a newcomer's machine.

    With build isolation: pip makes a throwaway environment holding what
    pyproject.toml's ``[build-system] requires`` names (fetched from the
    configured index, as ``pip install .`` itself does), so the test needs no
    ``wheel`` or recent setuptools in the venv it runs in.  Builds from a copy
    of the sources so the checkout gets no build/ or egg-info.
    """
    source = tmp_path / "source"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "dropin.cache")
    for name in SOURCES:
        origin = PROJECT_ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=ignore)
        else:
            shutil.copy(origin, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
         "-w", str(tmp_path / "dist"), str(source)],
        check=True, timeout=300)
    [wheel] = (tmp_path / "dist").glob("twisted_spark-*.whl")
    return wheel


def dependencies_without_this_project(tmp_path: Path) -> Path:
    """A view of the installed dependencies with every trace of twisted-spark removed.

    Links each entry of the current site-packages, except twisted-spark's own
    package, metadata and plugin file, so the fresh environment can only find
    the plugin through the wheel.
    """
    site = Path(twisted.__file__).parent.parent
    view = tmp_path / "deps"
    view.mkdir()
    for entry in site.iterdir():
        if entry.name.startswith(("twisted_spark", "__editable__")):
            continue
        if entry.name == "twisted":
            (view / "twisted").mkdir()
            for child in entry.iterdir():
                if child.name == "plugins":
                    (view / "twisted" / "plugins").mkdir()
                    for plugin in child.iterdir():
                        if plugin.name not in ("spark.py", "dropin.cache", "__pycache__"):
                            (view / "twisted" / "plugins" / plugin.name).symlink_to(plugin)
                else:
                    (view / "twisted" / child.name).symlink_to(child)
        else:
            (view / entry.name).symlink_to(entry)
    return view


def test_wheel_contains_plugin_and_fresh_venv_lists_spark(tmp_path):
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert "twisted/plugins/spark.py" in names
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names
    assert "twisted_spark/tap.py" in names
    assert not any(name.startswith("tests/") for name in names)
    console = sorted(p.name for p in (PROJECT_ROOT / "twisted_spark" / "console").iterdir()
                     if p.is_file())
    assert {"index.html", "app.js", "style.css"} <= set(console)
    missing = [name for name in console if f"twisted_spark/console/{name}" not in names]
    assert missing == [], "console files left out of the wheel (setup.cfg package_data)"

    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    fresh_site = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip())
    assert fresh_site != Path(sysconfig.get_paths()["purelib"])
    (fresh_site / "dependencies.pth").write_text(f"{dependencies_without_this_project(tmp_path)}\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
         "--target", str(fresh_site), str(wheel)],
        check=True, timeout=300)

    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [str(python), "-c", "from twisted.scripts.twistd import run; run()", "--help"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    commands = [line.split()[0] for line in result.stdout.splitlines()
                if line.startswith("    ") and line.split()]
    assert "spark" in commands

    where = subprocess.run(
        [str(python), "-c", "import twisted.plugins.spark as p, twisted_spark as t; "
                            "print(p.__file__); print(t.__file__)"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120, check=True)
    plugin_file, package_file = where.stdout.split()
    assert Path(plugin_file).is_relative_to(fresh_site)
    assert Path(package_file).is_relative_to(fresh_site)


def normalised(name: str) -> str:
    """A distribution name in PEP 503 form, for comparing spellings."""
    return re.sub(r"[-_.]+", "-", name).lower()


def setup_cfg_requirements(option: str, section: str = "options") -> set[str]:
    """Distribution names (no extras or versions) listed under an option of setup.cfg."""
    config = configparser.ConfigParser()
    config.read(PROJECT_ROOT / "setup.cfg")
    lines = config[section][option].strip().splitlines()
    return {normalised(re.match(r"[A-Za-z0-9._-]+", line.strip())[0]) for line in lines}


def imported_modules(*paths: Path) -> set[str]:
    """Top-level third-party modules the files import.

    Counts ``import x``, ``from x import y`` and ``pytest.importorskip("x")``;
    leaves out the standard library, twisted_spark and modules next to the files.
    """
    files = [file for path in paths for file in ([path] if path.is_file() else path.rglob("*.py"))]
    modules = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules.add(node.module.partition(".")[0])
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr == "importorskip"):
                modules.add(node.args[0].value.partition(".")[0])
    return modules - set(sys.stdlib_module_names) - {"twisted_spark"} - {f.stem for f in files}


def providers() -> dict[str, set[str]]:
    """Top-level module -> normalised names of the installed distributions providing it."""
    return {module: {normalised(dist) for dist in dists} - {"twisted-spark"}
            for module, dists in importlib.metadata.packages_distributions().items()}


def undeclared(modules: set[str], declared: set[str]) -> list[str]:
    """The modules no declared distribution provides (or none installed does)."""
    provided_by = providers()
    return sorted(module for module in modules if not provided_by.get(module, set()) & declared)


def test_runtime_dependencies_are_exactly_what_the_package_imports():
    """install_requires names what twisted_spark imports, no more (test and bench
    tools belong in extras) and no less (nothing arrives only as a dependency's
    dependency)."""
    runtime = setup_cfg_requirements("install_requires")
    modules = imported_modules(PROJECT_ROOT / "twisted_spark",
                               PROJECT_ROOT / "twisted" / "plugins" / "spark.py")
    assert undeclared(modules, runtime) == []
    provided_by = providers()
    unused = sorted(dist for dist in runtime
                    if not any(dist in provided_by.get(module, ()) for module in modules))
    assert unused == []


def test_extras_bring_what_the_suite_and_the_benchmarks_import():
    runtime = setup_cfg_requirements("install_requires")
    test = setup_cfg_requirements("test", "options.extras_require")
    bench = setup_cfg_requirements("bench", "options.extras_require")
    # fuzz/ and bench/ are this checkout's own (the corpus replay imports the
    # fuzz targets; the bench helpers' tests import the bench scripts).
    scripts = {path.stem for path in (PROJECT_ROOT / "bench").glob("*.py")}
    assert undeclared(imported_modules(PROJECT_ROOT / "tests") - {"fuzz"} - scripts,
                      runtime | test) == []
    # Benchmarks may reuse the suite's helpers (test keys, fixed randomness)
    # and each other (bench/rawhttp.py).
    helpers = {path.stem for path in (PROJECT_ROOT / "tests").glob("*.py")}
    assert undeclared(imported_modules(PROJECT_ROOT / "bench") - helpers - scripts,
                      runtime | bench) == []
    # fuzz/ runs under the test extra (the corpus replay); atheris, which only
    # ``python -m fuzz.run`` imports, is the fuzz extra (not installed for the suite).
    fuzz = setup_cfg_requirements("fuzz", "options.extras_require")
    assert fuzz == {"atheris"}
    assert undeclared(imported_modules(PROJECT_ROOT / "fuzz") - helpers - {"fuzz", "atheris"},
                      runtime | test) == []


def test_ci_runs_the_test_command_written_in_the_readme():
    readme = (PROJECT_ROOT / "README.rst").read_text()
    ci_lines = (PROJECT_ROOT / ".ci" / "run").read_text().strip().splitlines()
    command = ci_lines[-1].strip()
    assert command == "pip install '.[test]' && python -m pytest"
    assert f"\n    {command}\n" in readme


def test_ci_installs_nothing_the_readme_does_not():
    """No hidden upgrade of pip/setuptools/wheel before the README's command."""
    lines = [line.strip() for line in (PROJECT_ROOT / ".ci" / "run").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    installs = [line for line in lines if re.search(r"\bpip3?\b", line)]
    assert installs == ["pip install '.[test]' && python -m pytest"]
    assert 'python3 -m venv "$tmp/venv"' in lines


def test_readme_documents_every_server_option():
    from twisted_spark.tap import Options

    readme = (PROJECT_ROOT / "README.rst").read_text()
    names = [p[0] for p in Options.optParameters] + [f[0] for f in Options.optFlags]
    missing = [name for name in names if f"``--{name}``" not in readme]
    assert missing == []
