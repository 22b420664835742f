# The two commands a newcomer needs:
#   make demo   runs the main job: the reference Flask app and a stub cluster on loopback, one
#               Set Action sent through it, then serving for curl (store files in ./data)
#   make test   runs every test suite: Rust, C, C++, Python
.PHONY: demo test build header bench bench-smoke bench-route install uninstall wheel

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

# `make wheel` builds the Python wheel once into target/wheels/ (under CARGO_TARGET_DIR when set)
# and prints its path; `pip install` of that file needs no Rust (README, Python).
wheel:
	@scripts/wheel.sh

install:
	$(INSTALL_DIRS) scripts/install.sh install

uninstall:
	$(INSTALL_DIRS) scripts/install.sh uninstall

# Regenerate include/tms.h from the sources (the header test fails until it is committed).
header:
	TMS_BLESS=1 cargo test -p tms-header-check

# The benchmark (see BENCHMARKS.md): the side-by-side calls with their instruction counts, the
# whole Set Action route through gunicorn, PostgreSQL beside SQLite, and (with PUBLIC_APP set to a
# checkout of it) the public legacy app against its README migration; the charts go to
# bench/charts/ (committed with BENCHMARKS.md), the tables to target/. The PostgreSQL step runs
# under scripts/with-postgres.sh (TMS_TEST_PG_URL's server, else a throwaway one), started only
# for that step so that no idle server runs beside the others. bench-smoke is the small run
# `make test` makes so that none of it rots.
bench: build
	cargo build --release --example bench
	@python=$$(scripts/venv.sh) && \
	  "$$python" bench/run.py --markdown target/bench-table.md --charts bench/charts && \
	  "$$python" bench/route.py --markdown target/route-table.md --charts bench/charts && \
	  scripts/with-postgres.sh "$$python" bench/postgres.py --markdown target/bench-pg-table.md && \
	  scripts/with-postgres.sh "$$python" bench/failover.py && \
	  "$$python" bench/syncs.py && "$$python" bench/syncs.py --sync NORMAL && \
	  if [ -n "$(PUBLIC_APP)" ]; then \
	    "$$python" bench/public_app.py --app "$(PUBLIC_APP)" --markdown target/public-app-table.md; \
	  else echo "bench/public_app.py not run: PUBLIC_APP=<a checkout of the public legacy app> runs it"; fi

bench-smoke: build
	cargo build --release --example bench
	@python=$$(scripts/venv.sh) && \
	  "$$python" bench/run.py --quick && \
	  "$$python" bench/route.py --quick && \
	  scripts/with-postgres.sh "$$python" bench/postgres.py --quick && \
	  scripts/with-postgres.sh "$$python" bench/failover.py --quick && \
	  "$$python" bench/syncs.py --n 10

# The route benchmark alone (minutes).
bench-route: build
	@python=$$(scripts/venv.sh) && "$$python" bench/route.py --markdown target/route-table.md --charts target/charts
