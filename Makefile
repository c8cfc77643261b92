# kerntrace — build, install, test.  `sudo make demo` and `sudo make test` do
# every set-up step on a fresh Debian machine; each step is also a target.
.DELETE_ON_ERROR:
.SECONDARY:
.PHONY: all deps bpf install test test-unit test-kernel vmtest bench demo docker-repro image clean

SHELL := /bin/bash
ARCH := x86
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
CLANG ?= clang
LLVM_STRIP ?= llvm-strip
BPFTOOL ?= bpftool
BIN_DIR ?= /usr/local/bin
MAN_DIR ?= /usr/local/share/man/man1

# chromium and its fonts: the HTML report's browser test and make demo's screenshot;
# mmdebstrap builds the image, prometheus checks the alert rules; Java runs
# the test that reads traces with Spark.
APT_PACKAGES := clang llvm libbpf-dev bpftool libbpf1 python3-venv fio strace bpftrace iproute2 gcc make docker.io busybox-static \
	chromium fonts-dejavu-core mmdebstrap prometheus default-jre-headless
# Installed only when missing, so a set-up machine pays one dpkg query (again
# when this file changes: a package added here reaches set-up machines too).
DEPS_STAMP := .deps-installed

Q = @
ifeq ($(V),1)
Q =
endif

BPF_SRCS := $(wildcard bpf/*.bpf.c)
BPF_OBJS := $(BPF_SRCS:.bpf.c=.bpf.o)
BPFCFLAGS := -g -O2 -Wall -Werror=undef -target bpf -D__TARGET_ARCH_$(ARCH) -Ibpf

all: install

$(DEPS_STAMP): Makefile
	$(Q)missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "  APT     $$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
	fi
	$(Q)touch $@

deps: $(DEPS_STAMP)

# vmlinux.h is generated from the build host's BTF, not committed: this
# kernel (6.18) is newer than any we target, and CO-RE relocates every field
# access at load time, so objects built here run on older kernels (the VM
# tests prove it on Debian's 6.1).
bpf/vmlinux.h: | $(DEPS_STAMP)
	$(Q)test -r /sys/kernel/btf/vmlinux || { echo "build needs kernel BTF (/sys/kernel/btf/vmlinux)"; exit 2; }
	@echo "  GEN     $@"
	$(Q)$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@

# Second expansion: a plain $(wildcard bpf/%.h) is expanded before the
# pattern matches, finds nothing, and an edited event header rebuilt nothing.
.SECONDEXPANSION:
bpf/%.bpf.o: bpf/%.bpf.c bpf/vmlinux.h bpf/kerntrace.bpf.h bpf/kt_math.h bpf/core_fixes.bpf.h $$(wildcard bpf/$$*.h) | $(DEPS_STAMP)
	@echo "  BPF     $@"
	$(Q)$(CLANG) $(BPFCFLAGS) -c $< -o $@

# odirect claims table slots with compare-and-swap: an atomic of the v3
# instruction set (kernel 5.12+; the object needs 5.17 for bpf_loop anyway).
bpf/odirect.bpf.o: BPFCFLAGS += -mcpu=v3
# selftest's completion witness takes an index with a fetch-and-add (v3 too).
bpf/selftest.bpf.o: BPFCFLAGS += -mcpu=v3

bpf: $(BPF_OBJS)

$(VENV)/.installed: setup.cfg pyproject.toml | $(DEPS_STAMP)
	$(Q)test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(Q)$(VPY) -m pip install -q --upgrade pip
	$(Q)$(VPY) -m pip install -q -e '.[test,man,html,fleet]'
	$(Q)touch $@

install: bpf $(VENV)/.installed
	$(Q)for tool in iotrace nstrace; do ln -sf $(CURDIR)/$(VENV)/bin/$$tool $(BIN_DIR)/$$tool; done
	$(Q)mkdir -p $(MAN_DIR) && $(VPY) tools/manpages.py $(MAN_DIR)
	@echo "  OK      iotrace and nstrace in $(BIN_DIR), man pages in $(MAN_DIR)"

PYTEST := $(VPY) -m pytest -q -p no:cacheprovider

test: install
	$(Q)$(PYTEST) tests/unit tests/kernel

test-unit: install
	$(Q)$(PYTEST) tests/unit

test-kernel: install
	$(Q)$(PYTEST) tests/kernel

# Development tooling runs from the tree, not from the installed package:
# tests/vm/vmtest.py (the VM runner), bench/ (benchmarks, the demo),
# tools/manpages.py (man pages from the click commands, for install).
# vmtest installs what the guest needs on this host's root, which the guest
# shares, when missing: qemu-system-x86, busybox-static, linux-image-amd64,
# and for its bcc pass python3-bpfcc and linux-headers-<guest release>.
# It runs the kernel tests per backend (libbpf; --btf with the perf buffer;
# bcc: CI's subset, both files whole with VMTEST_FULL=1).
vmtest: install
	$(Q)$(VPY) tests/vm/vmtest.py $(if $(filter 1,$(VMTEST_FULL)),--bcc-full)

bench: install
	$(Q)$(VPY) bench/bench.py

demo: install
	$(Q)$(VPY) bench/demo.py

docker-repro: install
	$(Q)$(VPY) bench/docker_ip6mr.py

# The container image, offline (mmdebstrap, the project's wheels, docker
# import): tools/image.py; the running Docker engine gets kerntrace:VERSION.
image: bpf $(VENV)/.installed
	$(Q)$(VPY) tools/image.py

clean:
	rm -f bpf/*.bpf.o bpf/vmlinux.h dist/kerntrace-rootfs.tar dist/kerntrace-rootfs.key
