"""How the `tms` wheel is built: setuptools' PEP 517 backend plus four commands.

- BuildPy builds libtms with `cargo build --release` at the root of the repository this directory
  belongs to (into CARGO_TARGET_DIR when that is set, as cargo does) and copies the shared library
  into the package, beside the modules, where tms/_native.py looks for it first. The copy is
  stripped of its debug info (`strip -S`): cargo's release build keeps line tables, which make
  the library six times its size; the unstripped build stays in cargo's target directory.
- Build and EggInfo put setuptools' build tree (build/) and its *.egg-info into a temporary
  directory of this build, removed when it ends, instead of the source tree: a read-only checkout
  builds, nothing in the checkout changes, and no file of an earlier build (a module since
  deleted) can reach the wheel.
- BdistWheel marks the wheel as not pure and tags it py3-none-<platform>: the library is native
  code for one platform, but the binding is ctypes, so there is no CPython extension and no ABI
  to tie it to one Python version.
- build_sdist is refused: building needs the Rust sources two directories up, which an sdist of
  this directory would not contain.

The library links the system libsqlite3 (README, "SQLite linking"). Nothing here may copy a
SQLite into the wheel; `auditwheel repair` would, and is not part of this build.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from setuptools.build_meta import *  # noqa: F401,F403  (the other hooks are setuptools' own)
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build import build
from setuptools.command.build_py import build_py
from setuptools.command.egg_info import egg_info

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
LIBRARY_NAME = "libtms.dylib" if sys.platform == "darwin" else "libtms.so"


class BuildError(Exception):
    """The wheel cannot be built; the message says why and what to do."""


def build_sdist(sdist_directory, config_settings=None):
    raise BuildError(
        "tms-core has no sdist: the wheel is built from a checkout of the repository, whose Rust "
        "sources an sdist of bindings/python would not contain. Build the wheel directly: "
        "`pip wheel ./bindings/python` or `python -m build --wheel bindings/python`."
    )


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _package_version():
    text = _read(os.path.join(HERE, "tms", "_version.py"))
    found = re.search(r'^__version__ = "([^"]+)"$', text, re.M)
    if not found:
        raise BuildError("tms/_version.py has no __version__ line")
    return found.group(1)


def _run_cargo(args):
    cargo = os.environ.get("CARGO", "cargo")
    if shutil.which(cargo) is None:
        raise BuildError(
            "cargo was not found: the wheel builds libtms from its Rust sources. Install the Rust "
            "toolchain (rustup), and libsqlite3-dev, then run pip again."
        )
    # cargo's own progress and errors go to stderr, which pip shows with -v and on failure.
    done = subprocess.run([cargo, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise BuildError(f"`cargo {' '.join(args)}` failed in {ROOT} (exit status {done.returncode})")
    return done.stdout


def build_libtms():
    """Build libtms at the repository root; return the shared library's path.

    Exactly `cargo build --release`, as `make` runs it, so a checkout that already built the
    library reuses it instead of compiling again. The path comes from cargo's own report of what
    it built, which also honours CARGO_TARGET_DIR."""
    if not os.path.isfile(os.path.join(ROOT, "Cargo.toml")) or not re.search(
        r'^name = "tms-core"$', _read(os.path.join(ROOT, "Cargo.toml")), re.M
    ):
        raise BuildError(
            f"{ROOT} is not the tms-core repository: the wheel is built from a checkout "
            "(`pip install ./bindings/python`), with the Rust sources two directories up."
        )
    cargo_version = _run_cargo(["pkgid", "--quiet", "-p", "tms-core"]).strip()
    cargo_version = re.split(r"[#@]", cargo_version)[-1]
    if cargo_version != _package_version():
        raise BuildError(
            f"bindings/python/tms/_version.py says {_package_version()} but Cargo.toml says "
            f"{cargo_version}: Cargo.toml is the source, update _version.py to match."
        )
    report = _run_cargo(["build", "--release", "--message-format=json-render-diagnostics"])
    for line in report.splitlines():
        message = json.loads(line) if line.startswith("{") else {}
        target = message.get("target", {})
        if message.get("reason") == "compiler-artifact" and target.get("name") == "tms" \
                and "cdylib" in target.get("kind", []):
            for path in message.get("filenames", []):
                if os.path.basename(path) == LIBRARY_NAME:
                    return path
    raise BuildError(f"cargo build --release did not report building {LIBRARY_NAME}")


_SCRATCH: list[str] = []


def _scratch(name):
    """A directory NAME in this build's temporary directory (under TMPDIR), made on first use and
    removed when the build process ends: each PEP 517 hook runs in a process of its own, and
    what one hook leaves for the next (the wheel, the metadata) pip gives it a directory for."""
    if not _SCRATCH:
        _SCRATCH.append(tempfile.mkdtemp(prefix="tms-wheel-build-"))
        atexit.register(shutil.rmtree, _SCRATCH[0], True)
    path = os.path.join(_SCRATCH[0], name)
    os.makedirs(path, exist_ok=True)
    return path


class Build(build):
    """build, with its tree (build/lib, build/bdist.*) in the temporary directory."""

    def finalize_options(self):
        if self.build_base == "build":  # setuptools' default, relative to bindings/python
            self.build_base = _scratch("build")
        super().finalize_options()


class EggInfo(egg_info):
    """egg_info, writing tms_core.egg-info into the temporary directory rather than beside
    pyproject.toml (pip's metadata step names a directory of its own, which is kept)."""

    def finalize_options(self):
        if self.egg_base is None:
            self.egg_base = _scratch("egg-info")
        super().finalize_options()


def strip_debug_info(path):
    """Remove the debug sections from the library at PATH, in place (`strip -S`, as GNU and
    macOS strip both spell it; STRIP names another strip). Its symbols stay: a profiler or a
    backtrace still names the functions."""
    strip = os.environ.get("STRIP", "strip")
    if shutil.which(strip) is None:
        raise BuildError(
            f"{strip} was not found: the wheel's libtms is stripped of its debug info (binutils "
            "on Linux, the Xcode command-line tools on macOS), or set STRIP to a strip program."
        )
    done = subprocess.run([strip, "-S", path])
    if done.returncode != 0:
        raise BuildError(f"`{strip} -S {path}` failed (exit status {done.returncode})")


class BuildPy(build_py):
    """build_py, and libtms copied into the package, stripped."""

    def run(self):
        super().run()
        library = build_libtms()
        # An editable install imports the package from the source tree, where _native.py finds
        # the library in target/release/; copying it there would shadow later builds.
        if not self.editable_mode:
            # Always copied: cargo may hand back an older build (its mtime older than a copy
            # left by an earlier run), which a copy "if newer" would skip.
            os.makedirs(os.path.dirname(self._library_output()), exist_ok=True)
            shutil.copy(library, self._library_output())
            strip_debug_info(self._library_output())

    def _library_output(self):
        return os.path.join(self.build_lib, "tms", LIBRARY_NAME)

    def get_outputs(self, include_bytecode=True):
        outputs = super().get_outputs(include_bytecode)
        return outputs if self.editable_mode else [*outputs, self._library_output()]


class BdistWheel(bdist_wheel):
    """A platform wheel (it holds native code) for any Python 3 (ctypes needs no CPython ABI)."""

    def finalize_options(self):
        # As for a package with extension modules: installed as platform code (the wheel's root,
        # not .data/purelib) and tagged with a platform.
        self.distribution.has_ext_modules = lambda: True
        super().finalize_options()

    def get_tag(self):
        _, _, platform = super().get_tag()
        return "py3", "none", platform
