# vbdfs - userspace Xen block backend with a FUSE view of every disk.
#
#   make              build every program into $(BUILD)/
#   make check        build and run the whole test suite with prove
#   make asan         the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   make demo         the main job: serve a demo disk on the simulated hypervisor
#   make deps         install missing Debian packages (apt-get); no-op otherwise
#   make install      PREFIX=/usr/local DESTDIR= ; programs, man pages,
#                     vbdfs-hotplug (xl) and vbdfs.service (systemd)
#   make xen-check    vbdfs on real Xen in the xenlab (QEMU); SKIP without it
#   make clean        remove every build output
#
# Layers (each directory is one, with a header as its contract):
#   util/ <- formats/ <- blkback/ <- fusefs/
# Every .c in a layer (and its subdirectories) goes into that layer's
# library, except the program entry points listed in MAINS.

BUILD    ?= build
PREFIX   ?= /usr/local
# Xen's hotplug script directory (vbdfs-hotplug is copied there if it
# exists, so xl configs can say script=vbdfs-hotplug) and systemd's.
XEN_SCRIPT_DIR   ?= /etc/xen/scripts
SYSTEMD_UNIT_DIR ?= $(PREFIX)/lib/systemd/system
DESTDIR  ?=
CC       ?= cc
PKG_CONFIG ?= pkg-config

# Debian package providing each pkg-config module, for the error message.
PKGS := fuse3:libfuse3-dev xenstore:libxen-dev xengnttab:libxen-dev \
        xenevtchn:libxen-dev zlib:zlib1g-dev

# The README's commands (make check, make demo) install what is missing
# themselves: util/deps.sh is a no-op when everything is present.
ifneq ($(filter check asan demo xen-check,$(MAKECMDGOALS)),)
DEPS_STATUS := $(shell util/deps.sh >&2 || echo failed)
ifneq ($(DEPS_STATUS),)
$(error could not install the build dependencies (util/deps.sh failed))
endif
endif

ifeq ($(filter clean deps,$(MAKECMDGOALS)),)
PKG_MISSING := $(foreach p,$(PKGS),$(if $(shell $(PKG_CONFIG) --exists $(firstword $(subst :, ,$(p))) && echo y),,$(lastword $(subst :, ,$(p)))))
ifneq ($(strip $(PKG_MISSING)),)
$(error missing build dependencies; install the Debian package(s): $(sort $(PKG_MISSING)) (or run 'make deps'))
endif
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags fuse3 xenstore xengnttab xenevtchn zlib)
PKG_LIBS   := $(shell $(PKG_CONFIG) --libs fuse3 xenstore xengnttab xenevtchn zlib)
endif

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wno-unused-parameter
CFLAGS   ?= -O2 -g
ALL_CFLAGS = -std=gnu11 $(WARN) $(CFLAGS) $(SAN_FLAGS) -I. -D_GNU_SOURCE \
             -D_FILE_OFFSET_BITS=64 -DFUSE_USE_VERSION=35 $(PKG_CFLAGS) -MMD -MP
LDLIBS   = $(PKG_LIBS) -lpthread

ifeq ($(SANITIZE),1)
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif
ifeq ($(SANITIZE),fuzz)
SAN_FLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
             -fno-sanitize-recover=undefined
endif

LAYERS := util formats blkback fusefs

# program name : its main source file
MAINS := vbd-img:formats/vbd-img.c vbdctl:blkback/vbdctl.c \
         vbd-front:blkback/vbd-front.c vbdfs:fusefs/vbdfs.c
MAIN_SRCS := $(foreach m,$(MAINS),$(lastword $(subst :, ,$(m))))
PROGS := $(foreach m,$(MAINS),$(if $(wildcard $(lastword $(subst :, ,$(m)))),$(firstword $(subst :, ,$(m)))))

layer_srcs = $(filter-out $(MAIN_SRCS),$(wildcard $(1)/*.c $(1)/*/*.c))
LIBS := $(foreach l,$(LAYERS),$(if $(call layer_srcs,$(l)),$(BUILD)/lib$(l).a))
# Link order: the highest layer first.
LINK_LIBS := $(foreach l,fusefs blkback formats util,$(filter $(BUILD)/lib$(l).a,$(LIBS)))

TEST_CSRCS := $(wildcard t/*.c)
TEST_CBINS := $(patsubst t/%.c,$(BUILD)/t/%.t,$(TEST_CSRCS))
TEST_SH    := $(wildcard t/*.t)
# Helper programs for tests (fuzz replayers, fault shims...) live in t/helpers/.
TEST_HELPER_SRCS := $(wildcard t/helpers/*.c)
TEST_HELPERS := $(patsubst t/helpers/%.c,$(BUILD)/t/helpers/%,$(TEST_HELPER_SRCS))

# Lab-only programs (t/xen/*.c), run inside the xenlab's dom0 by make xen-check.
XEN_LAB_SRCS := $(wildcard t/xen/*.c)
XEN_LAB_BINS := $(patsubst t/xen/%.c,$(BUILD)/t/xen/%,$(XEN_LAB_SRCS))

MAN_PAGES := $(wildcard man/*.[1-8])

.SECONDARY:
.PHONY: all check asan demo deps install uninstall clean tests fuzz fuzz-bins xen-check

all: $(addprefix $(BUILD)/,$(PROGS))

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

define layer_rule
$(BUILD)/lib$(1).a: $(patsubst %.c,$(BUILD)/%.o,$(call layer_srcs,$(1)))
	@rm -f $$@
	$(AR) rcs $$@ $$^
endef
$(foreach l,$(LAYERS),$(eval $(call layer_rule,$(l))))

define prog_rule
$(BUILD)/$(firstword $(subst :, ,$(1))): $(BUILD)/$(patsubst %.c,%.o,$(lastword $(subst :, ,$(1)))) $(LINK_LIBS)
	$(CC) $(ALL_CFLAGS) -o $$@ $$< $(LINK_LIBS) $(LDLIBS)
endef
$(foreach m,$(MAINS),$(eval $(call prog_rule,$(m))))

$(BUILD)/t/%.t: $(BUILD)/t/%.o $(LINK_LIBS)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LINK_LIBS) $(LDLIBS)

$(BUILD)/t/helpers/%: $(BUILD)/t/helpers/%.o $(LINK_LIBS)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LINK_LIBS) $(LDLIBS)

$(BUILD)/t/xen/%: $(BUILD)/t/xen/%.o $(LINK_LIBS)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LINK_LIBS) $(LDLIBS)

$(BUILD)/t/helpers/%.so: t/helpers/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -shared -fPIC -o $@ $< -ldl

# Fuzz targets t/fuzz/fuzz_*.c: replay programs for make check (linked with
# t/fuzz/replay.c), libFuzzer programs for make fuzz (clang).
FUZZ_SRCS   := $(wildcard t/fuzz/fuzz_*.c)
FUZZ_REPLAY := $(patsubst t/fuzz/%.c,$(BUILD)/t/fuzz/%,$(FUZZ_SRCS))
FUZZ_SECONDS ?= 60

ifeq ($(SANITIZE),fuzz)
$(BUILD)/t/fuzz/%: $(BUILD)/t/fuzz/%.o $(LINK_LIBS)
	$(CC) $(ALL_CFLAGS) -fsanitize=fuzzer -o $@ $< $(LINK_LIBS) $(LDLIBS)
else
$(BUILD)/t/fuzz/%: $(BUILD)/t/fuzz/%.o $(BUILD)/t/fuzz/replay.o $(LINK_LIBS)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)
endif

fuzz-bins: $(FUZZ_REPLAY)

# make fuzz [FUZZ_SECONDS=N] [FUZZ_TARGETS="fuzz_a fuzz_b"]: each target (all
# by default) for N seconds; new corpus entries go to
# build-fuzz/corpus/<target>, crashes to build-fuzz/crash-*.
FUZZ_TARGETS ?= $(notdir $(FUZZ_REPLAY))
fuzz:
	util/deps.sh --fuzz
	$(MAKE) BUILD=build-fuzz CC=clang SANITIZE=fuzz fuzz-bins
	set -e; for f in $(FUZZ_TARGETS); do \
	    [ -f t/fuzz/$$f.c ] || { echo "make fuzz: no target $$f (see t/fuzz/)" >&2; exit 2; }; \
	    mkdir -p build-fuzz/corpus/$$f build-fuzz/seeds/$$f; \
	    if [ -x t/fuzz/seeds-$$f.sh ]; then t/fuzz/seeds-$$f.sh build-fuzz/seeds/$$f; fi; \
	    echo "== $$f for $(FUZZ_SECONDS) s"; \
	    build-fuzz/t/fuzz/$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	        -artifact_prefix=build-fuzz/crash-$$f- \
	        build-fuzz/corpus/$$f t/fuzz/corpus/$$f build-fuzz/seeds/$$f; \
	done

# LD_PRELOAD shims for fault injection (t/shim/*.c), built without the
# large-file renames so they can define both pread and pread64.
SHIM_SRCS := $(wildcard t/shim/*.c)
SHIMS := $(patsubst t/shim/%.c,$(BUILD)/t/shim/%.so,$(SHIM_SRCS))
$(BUILD)/t/shim/%.so: t/shim/%.c
	@mkdir -p $(dir $@)
	$(CC) -shared -fPIC -O2 -g $(WARN) -o $@ $< -ldl

tests: all $(TEST_CBINS) $(TEST_HELPERS) $(FUZZ_REPLAY) $(SHIMS) $(XEN_LAB_BINS)

# TESTS=... runs a subset, e.g. make check TESTS=t/010-hist.t
TESTS ?= $(sort $(addprefix ./,$(TEST_SH) $(TEST_CBINS)))
PROVE_FLAGS ?=
check: tests
	VBDFS_BUILD=$(abspath $(BUILD)) VBDFS_SRC=$(CURDIR) \
	    prove --exec '' $(PROVE_FLAGS) $(TESTS)

asan:
	$(MAKE) BUILD=build-asan SANITIZE=1 check

demo: deps all
	t/demo.sh

deps:
	@util/deps.sh

# vbdfs on real Xen: boots the xenlab (Xen 4.17 + Linux PV dom0/domUs under
# QEMU) with our programs and t/xen/hook.sh; passes only if every check
# passes; prints SKIP and succeeds if the lab itself cannot boot.
xen-check: tests
	VBDFS_BUILD=$(abspath $(BUILD)) t/xen/xen-check.sh $(XEN_CHECK_FLAGS)

install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin
	for p in $(PROGS); do \
	    case $$p in vbdfs|vbdctl) d=sbin ;; *) d=bin ;; esac; \
	    install -m 755 $(BUILD)/$$p $(DESTDIR)$(PREFIX)/$$d/$$p; done
	for m in $(MAN_PAGES); do \
	    s=$${m##*.}; install -d $(DESTDIR)$(PREFIX)/share/man/man$$s; \
	    install -m 644 $$m $(DESTDIR)$(PREFIX)/share/man/man$$s/; done
	install -d $(DESTDIR)$(PREFIX)/libexec/vbdfs $(DESTDIR)$(SYSTEMD_UNIT_DIR)
	install -m 755 util/vbdfs-hotplug $(DESTDIR)$(PREFIX)/libexec/vbdfs/vbdfs-hotplug
	if [ -d $(DESTDIR)$(XEN_SCRIPT_DIR) ]; then \
	    install -m 755 util/vbdfs-hotplug $(DESTDIR)$(XEN_SCRIPT_DIR)/vbdfs-hotplug; fi
	sed 's|@SBINDIR@|$(PREFIX)/sbin|g' util/vbdfs.service > $(DESTDIR)$(SYSTEMD_UNIT_DIR)/vbdfs.service
	chmod 644 $(DESTDIR)$(SYSTEMD_UNIT_DIR)/vbdfs.service

uninstall:
	for p in $(PROGS); do rm -f $(DESTDIR)$(PREFIX)/sbin/$$p $(DESTDIR)$(PREFIX)/bin/$$p; done
	for m in $(MAN_PAGES); do s=$${m##*.}; rm -f $(DESTDIR)$(PREFIX)/share/man/man$$s/$${m#man/}; done
	rm -f $(DESTDIR)$(PREFIX)/libexec/vbdfs/vbdfs-hotplug $(DESTDIR)$(XEN_SCRIPT_DIR)/vbdfs-hotplug \
	    $(DESTDIR)$(SYSTEMD_UNIT_DIR)/vbdfs.service

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
