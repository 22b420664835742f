# The two commands a newcomer needs:
#   make demo   runs the main job: the reference Flask app and a stub cluster on loopback, one
#               Set Action sent through it, then serving for curl (store files in ./data)
#   make test   runs every test suite: Rust, C, C++, Python
.PHONY: demo test build header bench bench-smoke

build:
	scripts/build.sh

demo: build
	@mkdir -p data
	@python=$$(scripts/venv.sh) && cd data && "$$python" ../bindings/python/examples/run_demo.py $(DEMO_ARGS)

test:
	scripts/test.sh

# Regenerate include/tms.h from the sources (the header test fails until it is committed).
header:
	TMS_BLESS=1 cargo test --test header

# The side-by-side benchmark (minutes; see BENCHMARKS.md) and its small CI smoke run.
bench: build
	cargo build --release --example bench
	@python=$$(scripts/venv.sh) && "$$python" bench/run.py --markdown target/bench-table.md

bench-smoke: build
	cargo build --release --example bench
	@python=$$(scripts/venv.sh) && "$$python" bench/run.py --quick
