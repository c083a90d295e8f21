# Top-level, non-recursive Makefile.
#
#   make            build every binary into build/bin/
#   make deps       install missing Debian packages (idempotent)
#   make test       deps + sanitizer build (ASan+UBSan) + every test
#   make run        deps + build + a whole single-machine installation
#   make bench      benchmarks (release build)
#   make fuzz       libFuzzer builds of the fuzz harnesses (clang)
#   make format     apply .clang-format
#
# Sources are discovered by folder: lib/*.c -> liboak.a, <daemon>/*.c ->
# lib<daemon>.a (+ main.c -> binary), test/unit/*_test.c -> one test binary
# each, test/fuzz/fuzz_*.c -> one replay binary each.

SAN ?= 0
ifeq ($(SAN),1)
O ?= build/san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
O ?= build
SANFLAGS :=
endif

CC ?= gcc
PKGS := libmicrohttpd jansson sqlite3 libcurl openssl grpc libprotobuf-c libarchive
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS ?= -O2 -g
OAK_CFLAGS = -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow -Wformat=2 -Wno-format-truncation -Wno-missing-field-initializers \
	-D_GNU_SOURCE -I. -I$(O)/gen $(PKG_CFLAGS) $(SANFLAGS) -MMD -MP $(CFLAGS)
# the symbols of the executable that plugins (oak-store-mongo.so) call
OAK_EXPORTS := oak_err_set oak_err_clear oak_log_write oak_log_level xmalloc xcalloc xrealloc \
	xstrdup xasprintf
OAK_LDFLAGS = -Wl,--as-needed $(LDFLAGS) $(SANFLAGS) \
	$(foreach s,$(OAK_EXPORTS),-Wl,--undefined=$(s),--export-dynamic-symbol=$(s))
LDLIBS += $(PKG_LIBS) -lpaho-mqtt3as -lpthread -lm -ldl

# The MongoDB store backend is a plugin: only processes configured with a
# mongodb:// store load libmongoc (see lib/oak_store.c).
MONGO_PLUGIN := $(O)/lib/oak/oak-store-mongo.so
MONGO_CFLAGS := $(shell pkg-config --cflags libmongoc-1.0 2>/dev/null)
MONGO_LIBS := $(shell pkg-config --libs libmongoc-1.0 2>/dev/null)

DAEMONS := root_orchestrator cluster_orchestrator node_engine net_manager cli
BIN_root_orchestrator := system-manager
BIN_cluster_orchestrator := cluster-manager
BIN_node_engine := node-engine
BIN_net_manager := net-manager
BIN_cli := oakctl

PROTOS := $(wildcard proto/*.proto)
PROTO_C := $(patsubst proto/%.proto,$(O)/gen/proto/%.pb-c.c,$(PROTOS))
PROTO_H := $(PROTO_C:.c=.h)

LIB_SRC := $(wildcard lib/*.c)
LIB_OBJ := $(patsubst %.c,$(O)/obj/%.o,$(LIB_SRC)) $(patsubst $(O)/gen/%.c,$(O)/obj/gen/%.o,$(PROTO_C))
LIBOAK := $(O)/liboak.a

define daemon_rules
$(1)_SRC := $$(filter-out $(1)/main.c,$$(wildcard $(1)/*.c))
$(1)_OBJ := $$(patsubst %.c,$(O)/obj/%.o,$$($(1)_SRC))
$(1)_LIB := $(O)/lib$(1).a
$$($(1)_LIB): $$($(1)_OBJ)
	@mkdir -p $$(@D)
	rm -f $$@ && ar rcs $$@ $$^
ifneq ($$(wildcard $(1)/main.c),)
BINS += $(O)/bin/$$(BIN_$(1))
BIN_DIRS += $(1)
endif
DAEMON_LIBS += $$($(1)_LIB)
endef
$(foreach d,$(DAEMONS),$(eval $(call daemon_rules,$(d))))

UNIT_SRC := $(wildcard test/unit/*_test.c)
UNIT_BIN := $(patsubst test/unit/%.c,$(O)/test/unit/%,$(UNIT_SRC))
FUZZ_SRC := $(wildcard test/fuzz/fuzz_*.c)
FUZZ_BIN := $(patsubst test/fuzz/%.c,$(O)/test/fuzz/%,$(FUZZ_SRC))
TOOL_SRC := $(wildcard test/tools/*.c)
TOOL_BIN := $(patsubst test/tools/%.c,$(O)/test/tools/%,$(TOOL_SRC))
BENCH_SRC := $(wildcard test/bench/*.c)
BENCH_BIN := $(patsubst test/bench/%.c,$(O)/test/bench/%,$(BENCH_SRC))
INTEG_SRC := $(wildcard test/integration/*_test.c)
INTEG_BIN := $(patsubst test/integration/%.c,$(O)/test/integration/%,$(INTEG_SRC))
TESTCOMMON_SRC := $(wildcard test/common/*.c)
TESTCOMMON_OBJ := $(patsubst %.c,$(O)/obj/%.o,$(TESTCOMMON_SRC))
TESTCOMMON := $(O)/libtestcommon.a
ALL_LIBS := $(DAEMON_LIBS) $(LIBOAK)
LINK_GROUP = -Wl,--start-group $(ALL_LIBS) -Wl,--end-group

# Every binary links all archives as a group: the linker takes only the
# objects a binary needs (node-engine uses the cluster's worker_proto.o).
define bin_rule
$(O)/bin/$(BIN_$(1)): $(O)/obj/$(1)/main.o $(ALL_LIBS)
	@mkdir -p $$(@D)
	$$(CC) $$(OAK_LDFLAGS) -o $$@ $$< $$(LINK_GROUP) $$(LDLIBS)
endef
$(foreach d,$(BIN_DIRS),$(eval $(call bin_rule,$(d))))

.PHONY: all deps test test-build run bench fuzz format format-check clean
.DEFAULT_GOAL := all
.SECONDARY:

all: $(BINS) $(MONGO_PLUGIN)

$(O)/obj/lib/store_mongo/%.pic.o: lib/store_mongo/%.c | $(PROTO_H)
	@mkdir -p $(@D)
	$(CC) $(OAK_CFLAGS) $(MONGO_CFLAGS) -fPIC -c -o $@ $<

$(MONGO_PLUGIN): $(O)/obj/lib/store_mongo/oak_store_mongo.pic.o
	@mkdir -p $(@D)
	$(CC) -shared -Wl,--as-needed $(LDFLAGS) $(SANFLAGS) -o $@ $< $(MONGO_LIBS) -ljansson

$(O)/gen/proto/%.pb-c.c $(O)/gen/proto/%.pb-c.h: proto/%.proto
	@mkdir -p $(@D)
	protoc-c --c_out=$(O)/gen $<

$(O)/obj/gen/%.o: $(O)/gen/%.c
	@mkdir -p $(@D)
	$(CC) $(OAK_CFLAGS) -Wno-error -c -o $@ $<

# every object may include generated protobuf headers
$(O)/obj/%.o: %.c | $(PROTO_H)
	@mkdir -p $(@D)
	$(CC) $(OAK_CFLAGS) -c -o $@ $<

$(LIBOAK): $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(TESTCOMMON): $(TESTCOMMON_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(O)/test/unit/%: $(O)/obj/test/unit/%.o $(TESTCOMMON) $(ALL_LIBS)
	@mkdir -p $(@D)
	$(CC) $(OAK_LDFLAGS) -o $@ $< $(TESTCOMMON) $(LINK_GROUP) $(LDLIBS) -lcmocka

$(O)/test/integration/%: $(O)/obj/test/integration/%.o $(TESTCOMMON) $(ALL_LIBS)
	@mkdir -p $(@D)
	$(CC) $(OAK_LDFLAGS) -o $@ $< $(TESTCOMMON) $(LINK_GROUP) $(LDLIBS) -lcmocka

$(O)/test/fuzz/%: $(O)/obj/test/fuzz/%.o $(O)/obj/test/fuzz/replay_main.o $(ALL_LIBS)
	@mkdir -p $(@D)
	$(CC) $(OAK_LDFLAGS) -o $@ $< $(O)/obj/test/fuzz/replay_main.o $(LINK_GROUP) $(LDLIBS)

$(O)/test/tools/%: $(O)/obj/test/tools/%.o $(TESTCOMMON) $(ALL_LIBS)
	@mkdir -p $(@D)
	$(CC) $(OAK_LDFLAGS) -o $@ $< $(TESTCOMMON) $(LINK_GROUP) $(LDLIBS)

$(O)/test/bench/%: $(O)/obj/test/bench/%.o $(TESTCOMMON) $(ALL_LIBS)
	@mkdir -p $(@D)
	$(CC) $(OAK_LDFLAGS) -o $@ $< $(TESTCOMMON) $(LINK_GROUP) $(LDLIBS)

deps:
	@deploy/install-deps.sh

test-build: $(BINS) $(MONGO_PLUGIN) $(UNIT_BIN) $(INTEG_BIN) $(FUZZ_BIN) $(TOOL_BIN)

test: deps
	$(MAKE) SAN=1 test-build
	$(MAKE) all
	OAK_RELEASE_DIR=build test/run.sh build/san

run: deps all
	deploy/local/run.sh build

bench: deps
	$(MAKE) all $(BENCH_BIN) $(TOOL_BIN)
	test/bench/run.sh build

fuzz:
	test/fuzz/build-libfuzzer.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

-include $(shell find $(O)/obj -name '*.d' 2>/dev/null)
