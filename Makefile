# SPDX-License-Identifier: GPL-2.0
#
# kmcl: VMBus Kernel Mode Client Library for Linux.
#
#   make run      build what is needed, boot the test VM, load kmcl, show it
#   make check    every test: host tests, style, docs, module builds, the VM
#                 suite (these two, and make setup, install packages)
#
#   make [modules]        build kmcl.ko against KDIR (default: the running
#                         kernel's build dir if Rust-enabled, else kmcl's
#                         test kernel once built)
#   make samples          build the sample drivers (separate modules)
#   make kunit-module     build the test build kmcl_kunit.ko (KUnit suites)
#   make hyperv-module    build the real-host smoke test (tests/hyperv/)
#   make KDIR=/path/to/a/rust-enabled/linux-7.x/build
#   make modules_install  install into /lib/modules/<kernel release>
#   make shell            a shell in the test VM, kmcl and the samples loaded
#   make docs             Documentation/ as HTML (out/docs/)
#   make rustdoc          the Rust wrapper's API docs (out/rustdoc/)
#   make rust-analyzer    write rust-project.json for editors
#   make clippy           build with CLIPPY=1
#   make host-test        cargo test of the pure protocol layer
#   make bench            benchmarks (host ring + in-VM), results in out/bench/
#   make fuzz             fuzz the parsers (FUZZ_SECONDS per target, default 300)
#
# The kernel toolchain is set here, in one place; override any of it on the
# command line.  Debian 12 packages: see scripts/setup.sh.

LLVM          ?= -19
RUSTC         ?= /usr/bin/rustc
RUSTDOC       ?= /usr/bin/rustdoc
CLIPPY_DRIVER ?= /usr/bin/clippy-driver
BINDGEN       ?= $(or $(CARGO_HOME),$(HOME)/.cargo)/bin/bindgen
KMCL_CACHE    ?= $(HOME)/.cache/kmcl
KFLAVOUR      ?= debug
export KMCL_CACHE

# Without KDIR: the running kernel's build directory if it is Rust-enabled
# (CONFIG_RUST=y and the kernel crate's metadata), else kmcl's own test
# kernel if `make check`, `make run` or `make kernel` built it already.
# `make` never installs packages or builds a kernel by itself.
RUNNING_KDIR := /lib/modules/$(shell uname -r)/build
ifeq ($(origin KDIR),undefined)
ifneq ($(and $(wildcard $(RUNNING_KDIR)/rust/libkernel.rmeta),$(shell grep -sx CONFIG_RUST=y $(RUNNING_KDIR)/.config)),)
KDIR := $(RUNNING_KDIR)
else
TEST_KDIR := $(shell scripts/kernel.sh kdir $(KFLAVOUR) 2>/dev/null)
KDIR := $(if $(wildcard $(TEST_KDIR)/.kmcl-built),$(TEST_KDIR))
endif
endif

# With a versioned LLVM (LLVM=-19) name the compiler and linker too: tools
# such as DKMS pass a plain CC=clang LD=ld.lld, which Debian does not have.
ifneq ($(filter -%,$(LLVM)),)
KTOOLS = CC=clang$(LLVM) LD=ld.lld$(LLVM)
endif

KBASE = $(MAKE) -C $(KDIR) LLVM=$(LLVM) $(KTOOLS) RUSTC=$(RUSTC) \
	RUSTDOC=$(RUSTDOC) BINDGEN=$(BINDGEN)
KMAKE = $(KBASE) M=$(CURDIR)
# The samples are separate modules, built as any out-of-tree user of kmcl
# is: against kmcl's Module.symvers.
SMAKE = $(KBASE) M=$(CURDIR)/samples KBUILD_EXTRA_SYMBOLS=$(CURDIR)/Module.symvers
BMAKE = $(KBASE) M=$(CURDIR)/bench KBUILD_EXTRA_SYMBOLS=$(CURDIR)/Module.symvers
HMAKE = $(KBASE) M=$(CURDIR)/tests/hyperv KBUILD_EXTRA_SYMBOLS=$(CURDIR)/Module.symvers

.PHONY: all modules samples bench bench-module hyperv-module kunit-module ksft-modules fuzz modules_install clean rust-analyzer clippy setup need-kdir \
	kernel host-test check run docs rustdoc shell

all: modules samples

setup:
	@scripts/setup.sh

need-kdir:
	@[ -n "$(KDIR)" ] || { echo "make: no KDIR, and $(RUNNING_KDIR) is not a Rust-enabled kernel build (CONFIG_RUST=y, rust/*.rmeta): set KDIR=, or use make check / make run, which bring their own kernel"; exit 1; }

kernel:
	@[ -x $(RUSTC) ] && [ -x $(BINDGEN) ] && command -v clang$(LLVM) >/dev/null || \
		{ echo "make kernel: needs the toolchain (make setup, or make check, installs it)"; exit 1; }
	@scripts/kernel.sh build $(KFLAVOUR)

modules: need-kdir
	$(KMAKE) modules

samples: modules
	$(SMAKE) modules

bench-module: modules
	$(BMAKE) modules

# The real-VMBus-host smoke test module (tests/kselftest/kmcl/hyperv.sh).
hyperv-module: modules
	$(HMAKE) modules

# The test build of kmcl.ko: the same sources with the KUnit suites and test
# hooks compiled in, built into out/kunit/ (the production kmcl.ko has none).
# Only `make check` loads it (tests/kselftest/kmcl/kunit.sh).
kunit-module: need-kdir
	$(KBASE) M=$(CURDIR)/tests/kunit MO=$(CURDIR)/out/kunit modules

# Whether KDIR's kernel has KUnit (the test build needs it).
KDIR_HAS_KUNIT = $(shell grep -sx 'CONFIG_KUNIT=y' $(KDIR)/.config)

# Every module the kselftest loads, copied into KSFT_MODULES (its modules/
# directory calls this; see tests/kselftest/kmcl/Makefile).  kmcl_kunit.ko
# only where the kernel has KUnit (kunit.sh skips otherwise).
KSFT_MODULES ?= $(CURDIR)/out/ksft-modules
ksft-modules: modules samples bench-module hyperv-module
	@mkdir -p $(KSFT_MODULES)
	cp rust/kmcl.ko samples/*.ko bench/*.ko tests/hyperv/*.ko $(KSFT_MODULES)/
ifneq ($(KDIR_HAS_KUNIT),)
	$(MAKE) --no-print-directory kunit-module
	cp out/kunit/rust/kmcl_kunit.ko $(KSFT_MODULES)/
else
	@echo "ksft-modules: no CONFIG_KUNIT in $(KDIR): no kmcl_kunit.ko"
	rm -f $(KSFT_MODULES)/kmcl_kunit.ko
endif

# Fuzzing (host parsers, cargo-fuzz): FUZZ_SECONDS per target; make check
# replays each target's corpus and runs it 10 s (KMCL_FUZZ_SECONDS).
FUZZ_SECONDS ?= 300
fuzz:
	@[ -x $(or $(CARGO_HOME),$(HOME)/.cargo)/bin/cargo-fuzz ] || \
		{ echo "make fuzz: needs cargo-fuzz (make setup, or make check, installs it)"; exit 1; }
	@scripts/fuzz.sh $(FUZZ_SECONDS)

# Benchmarks (not part of check): host ring (criterion) and the in-kernel
# benchmark in the VM on a non-debug kernel; results in out/bench/.
bench:
	@command -v qemu-system-x86_64 >/dev/null && [ -x $(BINDGEN) ] || \
		{ echo "make bench: needs the toolchain and QEMU (make setup, or make check, installs them)"; exit 1; }
	@scripts/bench.sh

modules_install: modules
	$(KMAKE) modules_install

# The test build too (its own output: out/kunit-clippy), where the kernel
# has KUnit.
clippy: need-kdir
	$(KMAKE) CLIPPY=1 CLIPPY_DRIVER=$(CLIPPY_DRIVER) modules
	$(SMAKE) CLIPPY=1 CLIPPY_DRIVER=$(CLIPPY_DRIVER) modules
	$(BMAKE) CLIPPY=1 CLIPPY_DRIVER=$(CLIPPY_DRIVER) modules
ifneq ($(KDIR_HAS_KUNIT),)
	$(KBASE) M=$(CURDIR)/tests/kunit MO=$(CURDIR)/out/kunit-clippy CLIPPY=1 \
		CLIPPY_DRIVER=$(CLIPPY_DRIVER) modules
endif

# rust-project.json for editors: the kernel's generator, completed by
# scripts/rust_analyzer.py (the wrapper's #[path] modules, the test cfg).
rust-analyzer: need-kdir
	$(KMAKE) rust-analyzer
	scripts/rust_analyzer.py rust-project.json

host-test:
	cargo test --manifest-path rust/host/Cargo.toml

# Documentation/ as HTML in out/docs/ (Sphinx from Debian's python3-sphinx;
# the API reference through the kernel's kernel-doc extension, from the
# test kernel's source unless KSRC names another tree).  -W: warnings fail.
KSRC ?= $(shell scripts/kernel.sh src $(KFLAVOUR))
docs:
	@command -v sphinx-build >/dev/null || { echo "make docs: needs sphinx-build (python3-sphinx; make setup)"; exit 1; }
	@test -f $(KSRC)/Documentation/sphinx/kerneldoc.py || { echo "make docs: no kernel source at $(KSRC) (make setup, or KSRC=)"; exit 1; }
	srctree=$(KSRC) sphinx-build -W -q -b html Documentation out/docs
	@echo "docs: out/docs/index.html"

# The Rust wrapper's API docs in out/rustdoc/ (scripts/rustdoc.sh).
rustdoc: samples
	KDIR=$(KDIR) RUSTDOC=$(RUSTDOC) scripts/rustdoc.sh

# The test VM with a shell on this terminal (busybox; kmcl and the samples
# loaded; `poweroff -f` or Ctrl-A X ends it), on kmcl's test kernel, which
# `make check` or `make run` builds.
shell:
	@kdir=$$(scripts/kernel.sh kdir $(KFLAVOUR)) && \
	if [ ! -f $$kdir/.kmcl-built ]; then \
		echo "make shell: the test kernel is not built yet: run make run or make check first"; exit 1; \
	fi && \
	KDIR=$$kdir KSRC=$$(scripts/kernel.sh src $(KFLAVOUR)) scripts/vm.sh shell

check: setup
	@scripts/check.sh

run: setup
	@scripts/run.sh

clean:
	-[ -d "$(KDIR)" ] && $(KMAKE) clean && $(SMAKE) clean && $(BMAKE) clean && $(HMAKE) clean
	-cargo clean --manifest-path rust/host/Cargo.toml
	rm -rf out
