# The two commands a newcomer needs:
#   make demo   runs the main job (a Set Action's bookkeeping) on the default paths in ./data
#   make test   runs every test suite: Rust, C, C++, Python
.PHONY: demo test build header

build:
	cargo build --release

demo: build
	@mkdir -p data
	cd data && python3 ../bindings/python/examples/demo.py

test:
	scripts/test.sh

# Regenerate include/tms.h from the sources (the header test fails until it is committed).
header:
	TMS_BLESS=1 cargo test --test header
