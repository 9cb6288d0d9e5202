# veil: one non-recursive GNU Makefile.
#
#   make            build build/bin/veil and the servers (veil-node,
#                   veil-gateway, veil-proxy)
#   make test       deps, build, unit + integration tests, unit tests again
#                   under ASan+UBSan, each fuzz harness briefly; ends with
#                   "N passed, N failed"
#   make run        deps, build, veil up with the default model (node,
#                   gateway and proxy on 127.0.0.1)
#   make bench      every issue's benchmarks, each beside its reference
#                   measured in the same run
#   make fuzz       longer fuzzing (FUZZ_SECONDS per harness, default 60)
#   make asan       unit tests under AddressSanitizer + UBSan
#   make repro      build twice in two directories, compare binaries
#   make clean
#
# BUILD=dir puts every output under dir (helpers and CI may build side by
# side).  Sources are found by wildcard and sorted, so adding a file needs no
# edit here:
#   src/lib/<module>/*.c       -> libveil.a
#     *_avx2.c                 compiled with AVX2+FMA+F16C
#     *_avx512.c               compiled with AVX-512 F/BW/VL/DQ (+FMA, F16C)
#     *_avx512vnni.c           as above plus AVX512-VNNI
#   src/cli/*.c                -> build/bin/veil
#   src/node/*.c               -> build/bin/veil-node
#   src/gateway/*.c            -> build/bin/veil-gateway
#   src/proxy/*.c              -> build/bin/veil-proxy
#   tests/unit/test_*.c        -> one cmocka binary each
#   tests/integration/test_*.sh
#   tests/fuzz/fuzz_*.c        -> libFuzzer harnesses (corpus in
#                                 tests/fuzz/corpus/<name>/)

BUILD ?= build
CC ?= cc
ifeq ($(origin CC),default)
CC := gcc
endif
FUZZ_CC ?= $(shell command -v clang || command -v clang-14 || echo clang)
PKG_CONFIG ?= pkg-config
SHELL := /bin/bash
NPROC := $(shell nproc 2>/dev/null || echo 2)

VERSION := 0.1.0
ifndef GIT_COMMIT
GIT_COMMIT := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
endif

PKGS := libssl libcrypto jansson libevent libevent_openssl libevent_pthreads libcurl sqlite3 libpq libsecp256k1 libsodium \
	libxml-2.0 xmlsec1-openssl
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)

# Reproducible: no build paths (file-prefix-map), no dates (__DATE__ is an
# error), sorted inputs, deterministic archives.
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wvla \
	-Wformat=2 -Wno-format-nonliteral -Werror=date-time
BASE_CFLAGS := -std=c17 -D_GNU_SOURCE -pthread -Iinclude $(WARN) \
	-ffile-prefix-map=$(CURDIR)=. -fno-strict-aliasing \
	-DVEIL_VERSION='"$(VERSION)"' -DVEIL_GIT_COMMIT='"$(GIT_COMMIT)"' \
	$(PKG_CFLAGS)
OPT ?= -O2 -g
CFLAGS_ALL := $(BASE_CFLAGS) $(OPT) $(CFLAGS)
LDLIBS_ALL := $(PKG_LIBS) -lm -pthread $(LDLIBS)
ARFLAGS := rcsD

ISA_avx2 := -mavx2 -mfma -mf16c
ISA_avx512 := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx2 -mfma -mf16c
ISA_avx512vnni := $(ISA_avx512) -mavx512vnni

SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer

LIB_SRC := $(sort $(wildcard src/lib/*/*.c src/lib/*/*/*.c))
CLI_SRC := $(sort $(wildcard src/cli/*.c))
NODE_SRC := $(sort $(wildcard src/node/*.c))
GATEWAY_SRC := $(sort $(wildcard src/gateway/*.c))
PROXY_SRC := $(sort $(wildcard src/proxy/*.c))
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_HELPERS := $(sort $(wildcard tests/unit/helpers/*.c))
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
BENCH_SRC := $(sort $(wildcard tests/bench/*.c))
HEADERS := $(sort $(wildcard include/veil/*.h src/*/*.h src/lib/*/*.h tests/unit/helpers/*.h))
# program sources some unit tests and fuzz harnesses #include (their static
# parsers): those binaries are rebuilt when these change
INCLUDED_SRC := $(sort $(wildcard src/gateway/*.c src/proxy/*.c src/node/parse.c src/node/rstore.c))

isa_flags = $(if $(filter %_avx512vnni.c,$1),$(ISA_avx512vnni),$(if $(filter %_avx512.c,$1),$(ISA_avx512),$(if $(filter %_avx2.c,$1),$(ISA_avx2))))

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
NODE_OBJ := $(NODE_SRC:%.c=$(BUILD)/obj/%.o)
GATEWAY_OBJ := $(GATEWAY_SRC:%.c=$(BUILD)/obj/%.o)
PROXY_OBJ := $(PROXY_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
HELPER_OBJ := $(UNIT_HELPERS:%.c=$(BUILD)/obj/%.o)
LIBVEIL := $(BUILD)/lib/libveil.a
VEIL := $(BUILD)/bin/veil
VEIL_NODE := $(BUILD)/bin/veil-node
# Each server is built once its sources exist.
VEIL_GATEWAY := $(if $(GATEWAY_SRC),$(BUILD)/bin/veil-gateway)
VEIL_PROXY := $(if $(PROXY_SRC),$(BUILD)/bin/veil-proxy)

ASAN_LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/asan/obj/%.o)
ASAN_HELPER_OBJ := $(UNIT_HELPERS:%.c=$(BUILD)/asan/obj/%.o)
ASAN_LIBVEIL := $(BUILD)/asan/lib/libveil.a
ASAN_UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/asan/tests/%)

FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/fuzz/obj/%.o)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)

.PHONY: all deps test run bench fuzz asan repro clean unit-bins asan-bins fuzz-bins bench-bins
.DELETE_ON_ERROR:
# Objects reached only through pattern rules would count as intermediate and
# be deleted after each link, so every fuzz/ASan build would recompile them.
.SECONDARY: $(FUZZ_LIB_OBJ) $(ASAN_LIB_OBJ) $(ASAN_HELPER_OBJ)

all: $(VEIL) $(VEIL_NODE) $(VEIL_GATEWAY) $(VEIL_PROXY)

deps:
	@bash scripts/deps.sh

# ---- normal build ----------------------------------------------------------

$(BUILD)/obj/%.o: %.c $(HEADERS) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(call isa_flags,$<) -c $< -o $@

$(LIBVEIL): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@rm -f $@
	$(AR) $(ARFLAGS) $@ $(LIB_OBJ)

$(VEIL): $(CLI_OBJ) $(LIBVEIL)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $(CLI_OBJ) $(LIBVEIL) $(LDLIBS_ALL)

$(VEIL_NODE): $(NODE_OBJ) $(LIBVEIL)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $(NODE_OBJ) $(LIBVEIL) $(LDLIBS_ALL)

$(BUILD)/bin/veil-gateway: $(GATEWAY_OBJ) $(LIBVEIL)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $(GATEWAY_OBJ) $(LIBVEIL) $(LDLIBS_ALL)

$(BUILD)/bin/veil-proxy: $(PROXY_OBJ) $(LIBVEIL)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $(PROXY_OBJ) $(LIBVEIL) $(LDLIBS_ALL)

$(BUILD)/tests/%: tests/unit/%.c $(HELPER_OBJ) $(LIBVEIL) $(INCLUDED_SRC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests/unit -o $@ $< $(HELPER_OBJ) $(LIBVEIL) $(LDLIBS_ALL) -lcmocka

unit-bins: $(UNIT_BIN) $(VEIL)

# Benchmark helpers (tests/bench/*.c), linked like unit tests, no cmocka.
BENCH_BIN := $(BENCH_SRC:tests/bench/%.c=$(BUILD)/bench/%)
$(BUILD)/bench/%: tests/bench/%.c $(LIBVEIL)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $< $(LIBVEIL) $(LDLIBS_ALL)

bench-bins: $(BENCH_BIN)

# ---- sanitizer build (unit tests again under ASan + UBSan) ---------------

$(BUILD)/asan/obj/%.o: %.c $(HEADERS) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -O1 -g $(SAN_FLAGS) $(call isa_flags,$<) -c $< -o $@

$(ASAN_LIBVEIL): $(ASAN_LIB_OBJ)
	@mkdir -p $(dir $@)
	@rm -f $@
	$(AR) $(ARFLAGS) $@ $(ASAN_LIB_OBJ)

$(BUILD)/asan/tests/%: tests/unit/%.c $(ASAN_HELPER_OBJ) $(ASAN_LIBVEIL) $(INCLUDED_SRC)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -O1 -g $(SAN_FLAGS) -Itests/unit -o $@ $< $(ASAN_HELPER_OBJ) $(ASAN_LIBVEIL) $(LDLIBS_ALL) -lcmocka

asan-bins: $(ASAN_UNIT_BIN)

asan: asan-bins
	@bash scripts/run-tests.sh --build $(BUILD) --only asan

# ---- fuzz harnesses (clang + libFuzzer) -----------------------------------

FUZZ_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -g -O1
$(BUILD)/fuzz/obj/%.o: %.c $(HEADERS) Makefile
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(filter-out -Wformat=2 -Werror=date-time,$(BASE_CFLAGS)) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link $(call isa_flags,$<) -c $< -o $@

$(BUILD)/fuzz/%: tests/fuzz/%.c $(FUZZ_LIB_OBJ) $(INCLUDED_SRC)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(filter-out -Wformat=2 -Werror=date-time,$(BASE_CFLAGS)) $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIB_OBJ) $(LDLIBS_ALL)

fuzz-bins: $(FUZZ_BIN)

FUZZ_SECONDS ?= 60
fuzz: fuzz-bins
	@bash scripts/run-tests.sh --build $(BUILD) --only fuzz --fuzz-seconds $(FUZZ_SECONDS)

# ---- the two commands of the README ---------------------------------------

test: deps
	@$(MAKE) --no-print-directory -j$(NPROC) all unit-bins asan-bins fuzz-bins bench-bins
	@bash scripts/run-tests.sh --build $(BUILD)

run: deps
	@$(MAKE) --no-print-directory -j$(NPROC) all
	@bash scripts/run.sh $(VEIL)

bench: deps
	@$(MAKE) --no-print-directory -j$(NPROC) all bench-bins
	@bash scripts/bench.sh --build $(BUILD)

repro:
	@bash scripts/repro.sh

clean:
	rm -rf $(BUILD)
