# ferry: the two commands a new user needs are `make demo` and `make test`.
# Both install what they need (Debian packages, needs root or sudo), build,
# and start the two-cluster test environment in ceph-testenv/.

CARGO ?= cargo
TESTENV := ceph-testenv/testenv

.PHONY: all build deps testenv test lint demo bench bench-scale down status clean

all: build

deps:
	$(TESTENV) install

build: deps
	$(CARGO) build --release

testenv: deps
	$(TESTENV) up

## The README's test command: unit tests, then integration tests on the real clusters.
test: testenv
	$(CARGO) test

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	shellcheck ceph-testenv/testenv ceph-testenv/openstack ceph-testenv/nova ceph-testenv/convhost ceph-testenv/guest ceph-testenv/lib.sh ceph-testenv/demo ceph-testenv/bench ceph-testenv/bench-scale ceph-testenv/bench-stream .ci/run
	shellcheck -s sh src/render/*.sh

## The README's demo command.
demo: build testenv
	ceph-testenv/demo

## Times ferry against the manual procedure and export|import, same images, one run.
bench: build testenv
	ceph-testenv/bench

## Many images: plan, check and run times with max RSS (BENCH_SCALE_N=1000 for more).
bench-scale: build testenv
	ceph-testenv/bench-scale

status:
	$(TESTENV) status

down:
	$(TESTENV) down

clean: down
	rm -rf ceph-testenv/state
	$(CARGO) clean
