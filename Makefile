# highlander: plain Makefile in the Redis/hiredis shape.
#
#   make                      build/highlander
#   make SANITIZER=address    instrumented build in build/address/
#   make deps | test | test-unit | test-system | bench | fuzz | clean
#   make demo | demo-stop | cluster-up | cluster-down
#   make image                localhost/highlander:$(VERSION) with podman (scripts/image.sh)

VERSION := 0.1.0
OPTIMIZATION ?= -O2
WERROR ?= 1
SANITIZER ?=
CC ?= cc
PYTEST ?= python3 -m pytest

ifeq ($(SANITIZER),)
BUILD ?= build
else
BUILD ?= build/$(SANITIZER)
endif

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wwrite-strings -Wformat=2 -Wno-unused-parameter
ifeq ($(WERROR),1)
WARN += -Werror
endif

GIT_REV := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
CPPFLAGS += -Iinclude -Ithird_party/llhttp -D_GNU_SOURCE $(shell pkg-config --cflags libpq 2>/dev/null) \
            -DHIGHLANDER_VERSION='"$(VERSION)"' -DHIGHLANDER_GIT_REV='"$(GIT_REV)"'
CFLAGS ?= $(OPTIMIZATION) -g
CFLAGS += -std=c11 -fno-strict-aliasing -MMD -MP
LIBS := -luv -lhiredis -lcurl -lcyaml -lyaml -ljansson -lpq -lm

ifeq ($(SANITIZER),address)
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else ifeq ($(SANITIZER),undefined)
SANFLAGS := -fsanitize=undefined -fno-sanitize-recover=undefined
else ifeq ($(SANITIZER),thread)
SANFLAGS := -fsanitize=thread
endif
CFLAGS += $(SANFLAGS)
LDFLAGS += $(SANFLAGS)

SRCS := $(sort $(wildcard src/*.c))
LIB_SRCS := $(filter-out src/main.c,$(SRCS))
OBJS := $(LIB_SRCS:src/%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/assets.o
LLHTTP_SRCS := third_party/llhttp/llhttp.c third_party/llhttp/api.c third_party/llhttp/http.c
LLHTTP_OBJS := $(LLHTTP_SRCS:third_party/llhttp/%.c=$(BUILD)/obj/llhttp_%.o)
ASSET_SRCS := $(sort $(wildcard src/assets/*))

UNIT_SRCS := $(sort $(wildcard test/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:test/unit/%.c=$(BUILD)/test/%)

.PHONY: all tools deps clean test test-unit test-unit-asan test-unit-valgrind test-system \
        test-system-asan bench fuzz demo demo-stop cluster-up cluster-down chaos chaos-check image

all: $(BUILD)/highlander

$(BUILD)/highlander: $(BUILD)/obj/main.o $(BUILD)/libhighlander.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/libhighlander.a: $(OBJS) $(LLHTTP_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/obj/%.o: src/%.c | third_party/llhttp/llhttp.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -c -o $@ $<

# llhttp is third-party code: compiled without our warning set, in its
# strict mode (RFC 9112: no whitespace in or after a field name, CRLF
# line ends, no obs-fold).
$(BUILD)/obj/llhttp_%.o: third_party/llhttp/%.c third_party/llhttp/llhttp.h Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -DLLHTTP_STRICT_MODE=1 -w -c -o $@ $<

# llhttp 8.1's C sources come from Debian's node-llhttp package.
LLHTTP_DEB := /usr/share/llhttp
third_party/llhttp/llhttp.h third_party/llhttp/llhttp.c third_party/llhttp/api.c third_party/llhttp/http.c:
	@test -f $(LLHTTP_DEB)/llhttp.c || { echo "node-llhttp is missing: run 'make deps'" >&2; exit 1; }
	@mkdir -p third_party/llhttp
	cp $(LLHTTP_DEB)/llhttp.c $(LLHTTP_DEB)/api.c $(LLHTTP_DEB)/http.c third_party/llhttp/
	cp /usr/share/include/llhttp/llhttp.h third_party/llhttp/

# The dashboard and other static files, embedded as C arrays.
$(BUILD)/obj/assets.o: $(ASSET_SRCS) scripts/embed-assets.sh
	@mkdir -p $(dir $@)
	sh scripts/embed-assets.sh $(BUILD)/assets.c $(ASSET_SRCS)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $(BUILD)/assets.c

$(BUILD)/test/%: test/unit/%.c $(BUILD)/libhighlander.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -Wno-missing-prototypes -o $@ $< $(BUILD)/libhighlander.a \
		$(LDFLAGS) $(LIBS) -lcmocka

# Programs the system tests drive (not installed).
TOOL_SRCS := $(sort $(wildcard test/tools/*.c))
TOOL_BINS := $(TOOL_SRCS:test/tools/%.c=$(BUILD)/tools/%)
tools: $(TOOL_BINS)
$(BUILD)/tools/%: test/tools/%.c $(BUILD)/libhighlander.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -o $@ $< $(BUILD)/libhighlander.a $(LDFLAGS) $(LIBS)

deps:
	@sh scripts/deps.sh

clean:
	rm -rf build

# ---- tests -----------------------------------------------------------------

# On a fresh machine `make test` alone does all set-up: deps is idempotent
# and quiet (about a second) when everything is installed.
test: deps
	@rm -f build/test-results.txt
	@$(MAKE) --no-print-directory test-unit test-unit-asan test-unit-valgrind test-system \
		test-system-asan fuzz-check chaos-check
	@awk '{p += $$2; f += $$3} END {printf "make-test: %d passed, %d failed\n", p, f; exit f > 0}' \
		build/test-results.txt

test-unit: $(UNIT_BINS)
	@sh test/run-unit.sh $(BUILD)/test $(if $(SANITIZER),$(SANITIZER),plain)

test-unit-asan:
	@$(MAKE) --no-print-directory SANITIZER=address test-unit

test-unit-valgrind: $(UNIT_BINS)
	@sh test/run-unit.sh $(BUILD)/test valgrind

test-system: $(BUILD)/highlander tools
	@HIGHLANDER_BIN=$(CURDIR)/$(BUILD)/highlander sh test/run-pytest.sh system -q test/system

test-system-asan:
	@$(MAKE) --no-print-directory SANITIZER=address all tools
	@HIGHLANDER_BIN=$(CURDIR)/build/address/highlander HIGHLANDER_ASAN=1 \
		sh test/run-pytest.sh system-asan -q test/system -m "not perf"

# ---- fault campaign (test/chaos) ---------------------------------------------

# Seeded randomized faults per store, every leadership log judged by an
# external interval checker; prints a table (docs/reliability.md).
CHAOS_SEED ?= 1
CHAOS_FAULTS ?= 3000
CHAOS_STORES ?= redis,sentinel,db,lease

chaos: $(BUILD)/highlander
	@python3 test/chaos/chaos.py --seed $(CHAOS_SEED) --faults $(CHAOS_FAULTS) --stores $(CHAOS_STORES) \
		--bin $(CURDIR)/$(BUILD)/highlander --out $(CURDIR)/$(BUILD)/chaos-run

# Part of 'make test': 150 faults over redis, sentinel and db, under 5 minutes (the
# Sentinel part, a master with two replicas, takes about 4 of them).
chaos-check: $(BUILD)/highlander
	@python3 test/chaos/checker.py --selftest
	@python3 test/chaos/chaos.py --seed 1 --faults 150 --stores redis,sentinel,db --max-seconds 300 \
		--bin $(CURDIR)/$(BUILD)/highlander --out $(CURDIR)/$(BUILD)/chaos-check --results build/test-results.txt

# ---- fuzzing (clang libFuzzer) ---------------------------------------------

FUZZ_TARGETS := $(patsubst test/fuzz/fuzz_%.c,%,$(wildcard test/fuzz/fuzz_*.c))
FUZZ_SECONDS ?= 60

fuzz:
	@FUZZ_SECONDS=$(FUZZ_SECONDS) sh test/fuzz/run.sh $(FUZZ_TARGETS)

# Part of 'make test': every corpus file replayed plus a short run.
fuzz-check:
	@FUZZ_SECONDS=15 sh test/fuzz/run.sh $(FUZZ_TARGETS)

# ---- benchmarks, demo, local cluster ---------------------------------------

bench: $(BUILD)/highlander
	@sh bench/http/run.sh $(BUILD)/highlander
	@python3 bench/http/compare.py $(BUILD)/highlander
	@python3 bench/http/hostile.py $(BUILD)/highlander
	@python3 bench/failover/run.py $(BUILD)/highlander 20
	@$(MAKE) --no-print-directory tools
	@python3 bench/watch/run.py $(BUILD)/tools
	@python3 bench/reconcile/run.py $(BUILD)/highlander 1000
	@python3 bench/reconcile/burst.py --go $(BUILD)/highlander

demo:
	@bash scripts/demo.sh

demo-stop:
	@bash scripts/demo.sh stop

cluster-up:
	@bash test/cluster/cluster.sh up

cluster-down:
	@bash test/cluster/cluster.sh down

# The Dockerfile built by podman, base image from debootstrap, all cached in
# ~/.cache/highlander/image; prints the image's name, id and size.
image:
	@bash scripts/image.sh build

-include $(OBJS:.o=.d) $(BUILD)/obj/main.d $(UNIT_BINS:=.d)
