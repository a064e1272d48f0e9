# kalamstore: `make demo` runs the main job, `make test` passes the tests. Both install what
# cargo cannot (libclang for RocksDB's bindgen, the S3-compatible test server, the Delta
# readers the tests check our tables with) when missing.

# Reuse one build across clones on this machine unless the caller chose a target dir.
CARGO_TARGET_DIR ?= $(HOME)/.cache/kalamstore/target
export CARGO_TARGET_DIR

S3_PORT ?= 9555
S3_BUCKET ?= kalamstore-test
# delta-rs's Python `deltalake` and Polars, which read the published Delta tables in tests.
DELTA_VENV ?= $(HOME)/.cache/kalamstore/delta-venv

.PHONY: demo test setup build bench bench-engines bench-server bench-large-statements fmt clippy s3-start s3-stop

# A fresh data dir for every demo run.
DEMO_DATA ?= $(CARGO_TARGET_DIR)/demo-data

demo: setup
	cargo build --workspace --bins
	rm -rf "$(DEMO_DATA)"
	"$(CARGO_TARGET_DIR)/debug/kalamstore" --data-dir "$(DEMO_DATA)" --timeout 1 --file examples/chat.sql

test: setup
	@set -e; \
	trap 'scripts/s3-server stop $(S3_PORT)' EXIT; \
	scripts/s3-server start $(S3_PORT) $(S3_BUCKET); \
	export KALAMSTORE_S3_ENDPOINT=http://127.0.0.1:$(S3_PORT) KALAMSTORE_S3_BUCKET=$(S3_BUCKET); \
	export KALAMSTORE_DELTA_PYTHON="$$(scripts/delta-readers $(DELTA_VENV))"; \
	cargo fmt --all --check; \
	cargo clippy --workspace --all-targets -- -D warnings; \
	cargo test --workspace --no-run; \
	cargo test --workspace

# System packages cargo cannot install: libclang (RocksDB's bindgen) and a C++ compiler.
setup:
	@command -v cargo >/dev/null || { echo "cargo is missing: install Rust with rustup first"; exit 1; }
	@scripts/install-system-deps

build: setup
	cargo build --workspace --all-targets

bench: setup
	cargo bench -p kalamstore-benches

# The engine table of README: every engine in its own process, alternating, median of 3 rounds.
bench-engines: setup
	scripts/bench-engines 3

# pgbench against `kalamstore serve` and the machine's PostgreSQL 15, side by side (README).
bench-server: setup
	scripts/bench-server 20 16

# Peak memory of 1M- and 9M-row statements on a 10M-row table through the CLI (README).
bench-large-statements: setup
	scripts/bench-large-statements 10000000

fmt:
	cargo fmt --all

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

s3-start:
	scripts/s3-server start $(S3_PORT) $(S3_BUCKET)

s3-stop:
	scripts/s3-server stop $(S3_PORT)
