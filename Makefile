# The two commands a newcomer needs:
#   make demo   runs the main job: the reference Flask app and a stub cluster on loopback, one
#               Set Action sent through it, then serving for curl (store files in ./data)
#   make test   runs every test suite: Rust, C, C++, Python
.PHONY: demo test build header bench bench-smoke bench-route install uninstall

# `make install PREFIX=... [DESTDIR=...]` puts libtms where C and C++ programs find it: the shared
# library with its SONAME links, libtms.a, tms.h, tms.pc for pkg-config, and bin/tms once built.
PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR ?= $(PREFIX)/bin
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
DESTDIR ?=
INSTALL_DIRS = PREFIX="$(PREFIX)" LIBDIR="$(LIBDIR)" INCLUDEDIR="$(INCLUDEDIR)" BINDIR="$(BINDIR)" \
	PKGCONFIGDIR="$(PKGCONFIGDIR)" DESTDIR="$(DESTDIR)"

build:
	scripts/build.sh

demo: build
	@mkdir -p data
	@python=$$(scripts/venv.sh) && cd data && "$$python" ../bindings/python/examples/run_demo.py $(DEMO_ARGS)

test:
	scripts/test.sh

install:
	$(INSTALL_DIRS) scripts/install.sh install

uninstall:
	$(INSTALL_DIRS) scripts/install.sh uninstall

# Regenerate include/tms.h from the sources (the header test fails until it is committed).
header:
	TMS_BLESS=1 cargo test -p tms-header-check

# The side-by-side benchmark (minutes; see BENCHMARKS.md) and its small CI smoke run.
bench: build
	cargo build --release --example bench
	@python=$$(scripts/venv.sh) && "$$python" bench/run.py --markdown target/bench-table.md

bench-smoke: build
	cargo build --release --example bench
	@python=$$(scripts/venv.sh) && "$$python" bench/run.py --quick

# The whole Set Action route through gunicorn: baseline, library and legacy routes (minutes;
# `bench/route.py --quick` is its smoke run).
bench-route: build
	@python=$$(scripts/venv.sh) && "$$python" bench/route.py --markdown target/route-table.md --charts target/charts
