"""The package as it is shipped: its version, where it loads libtms from, and its type hints.

Installing into a fresh venv with pip is tested by scripts/test-install.sh; these are the checks
that need no build.
"""

import ast
import inspect
import os
import re
import shutil
import subprocess
import sys
import typing

import pytest

import tms
from tms import _native, audit_db, errors, jobs

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BINDING = os.path.join(ROOT, "bindings", "python")
PACKAGE = os.path.join(BINDING, "tms")
REAL_LIBRARY = os.environ.get("TMS_LIB") or os.path.join(ROOT, "target", "release", "libtms.so")


def cargo_version():
    with open(os.path.join(ROOT, "Cargo.toml"), encoding="utf-8") as f:
        text = f.read()
    try:
        import tomllib
    except ImportError:  # Python before 3.11: the [package] table's first version line
        return re.search(r'^\[package\][^\[]*?^version = "([^"]+)"', text, re.M | re.S).group(1)
    return tomllib.loads(text)["package"]["version"]


def test_the_package_version_is_the_cargo_version_and_the_loaded_library_s():
    assert tms.__version__ == cargo_version(), "bump bindings/python/tms/_version.py with Cargo.toml"
    assert tms.version() == tms.__version__


# --- the loader --------------------------------------------------------------------------------


def import_tms(package_parent, env_lib=None, cwd=None):
    """`import tms` in a fresh interpreter from package_parent, TMS_LIB as given (unset: None);
    returns (exit status, the loaded library's path or the error)."""
    env = {k: v for k, v in os.environ.items() if k not in ("TMS_LIB", "PYTHONPATH")}
    env["PYTHONPATH"] = package_parent
    if env_lib is not None:
        env["TMS_LIB"] = env_lib
    code = "import tms, tms._native as n; print(n.library_path)"
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd or package_parent,
                          capture_output=True, text=True, timeout=60)
    return done.returncode, (done.stdout.strip() if done.returncode == 0 else done.stderr)


@pytest.fixture
def package_copy(tmp_path):
    """A copy of the package outside the repository, as pip installs it but without the library."""
    shutil.copytree(PACKAGE, tmp_path / "tms", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    return tmp_path


def test_the_loader_takes_the_library_inside_the_package(package_copy):
    os.symlink(os.path.abspath(REAL_LIBRARY), package_copy / "tms" / "libtms.so")
    assert import_tms(str(package_copy)) == (0, str(package_copy / "tms" / "libtms.so"))


def test_tms_lib_still_wins_over_the_library_inside_the_package(package_copy, tmp_path_factory):
    os.symlink(os.path.abspath(REAL_LIBRARY), package_copy / "tms" / "libtms.so")
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "libtms.so"
    os.symlink(os.path.abspath(REAL_LIBRARY), elsewhere)
    assert import_tms(str(package_copy), env_lib=str(elsewhere)) == (0, str(elsewhere))


def test_a_checkout_falls_back_to_target_release():
    assert import_tms(BINDING, cwd="/") == (0, os.path.join(ROOT, "target", "release", "libtms.so"))


def test_no_library_anywhere_says_where_it_looked_and_what_to_do(package_copy):
    status, err = import_tms(str(package_copy))
    assert status != 0
    assert "ImportError: libtms was not found" in err
    assert str(package_copy / "tms" / "libtms.so") in err and "pip install ./bindings/python" in err


def test_a_library_of_another_version_is_refused(package_copy):
    source = package_copy / "fake.c"
    source.write_text('const char *tms_version(void) { return "9.9.9"; }\n')
    fake = package_copy / "libtms-9.9.9.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(fake), str(source)], check=True)
    status, err = import_tms(str(package_copy), env_lib=str(fake))
    assert status != 0
    assert f"ImportError: {fake} is libtms 9.9.9, but this tms package is {tms.__version__}" in err


# --- type hints --------------------------------------------------------------------------------


def public_functions():
    """Every public function and method of the API, by a readable name."""
    found = {f"tms.{n}": getattr(tms, n) for n in tms.__all__ if inspect.isfunction(getattr(tms, n))}
    for module in (jobs, audit_db, errors):
        for name, fn in vars(module).items():
            if inspect.isfunction(fn) and not name.startswith("_") and fn.__module__ == module.__name__:
                found[f"{module.__name__}.{name}"] = fn
    for name, fn in vars(tms.Store).items():
        if inspect.isfunction(fn) and (not name.startswith("_") or name in ("__init__", "__enter__", "__exit__")):
            found[f"tms.Store.{name}"] = fn
    found["tms.TmsError.__init__"] = tms.TmsError.__init__
    return found


@pytest.mark.parametrize("name", sorted(public_functions()))
def test_every_public_function_is_fully_annotated(name):
    fn = public_functions()[name]
    sig = inspect.signature(fn)
    missing = [p.name for p in sig.parameters.values()
               if p.name != "self" and p.annotation is inspect.Parameter.empty]
    assert not missing, f"{name}: parameters without a type hint: {missing}"
    assert sig.return_annotation is not inspect.Signature.empty, f"{name}: no return type hint"
    typing.get_type_hints(fn)  # every hint names something that exists


def test_the_package_is_marked_typed():
    assert os.path.isfile(os.path.join(PACKAGE, "py.typed"))


@pytest.mark.parametrize("path", sorted(
    [os.path.join(PACKAGE, f) for f in os.listdir(PACKAGE) if f.endswith(".py")]
    + [os.path.join(BINDING, "_build_backend.py")]))
def test_the_sources_stay_python_3_9_compatible(path):
    with open(path, encoding="utf-8") as f:
        source = f.read()
    ast.parse(source, filename=path, feature_version=(3, 9))
    # `X | None` in a hint is only 3.9-safe when hints are not evaluated at import.
    if "|" in source and os.path.basename(path) != "_version.py":
        assert "from __future__ import annotations" in source, path


def test_mypy_accepts_the_hints():
    """The hints agree with the code (strict, except that returning decoded JSON as a declared
    type is allowed: json.loads returns Any)."""
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-warn-return-any",
         "--cache-dir", os.path.join(ROOT, "target", "mypy-cache"), PACKAGE],
        capture_output=True, text=True, timeout=600, cwd=BINDING)
    assert done.returncode == 0, done.stdout + done.stderr
