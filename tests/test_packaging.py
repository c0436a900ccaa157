"""The built wheel carries the twistd plugin, and a fresh environment finds it."""

import os
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
    """Build from a copy of the sources so the checkout gets no build/ or egg-info."""
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
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "-w", str(tmp_path / "dist"), str(source)],
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


def test_ci_runs_the_test_command_written_in_the_readme():
    readme = (PROJECT_ROOT / "README.rst").read_text()
    ci_lines = (PROJECT_ROOT / ".ci" / "run").read_text().strip().splitlines()
    command = ci_lines[-1].strip()
    assert command == "pip install '.[test]' && python -m pytest"
    assert f"\n    {command}\n" in readme


def test_readme_documents_every_server_option():
    from twisted_spark.tap import Options

    readme = (PROJECT_ROOT / "README.rst").read_text()
    names = [p[0] for p in Options.optParameters] + [f[0] for f in Options.optFlags]
    missing = [name for name in names if f"``--{name}``" not in readme]
    assert missing == []
