# SPDX-License-Identifier: GPL-2.0
#
# kmcl: VMBus Kernel Mode Client Library for Linux.
#
#   make run      build what is needed, boot the test VM, load kmcl, show it
#   make check    every test: host tests, module build, VM suite
#
#   make [modules]        build kmcl.ko against KDIR
#   make samples          build the sample drivers (separate modules)
#   make hyperv-module    build the real-host smoke test (tests/hyperv/)
#   make KDIR=/path/to/a/rust-enabled/linux-7.x/build
#   make modules_install  install into /lib/modules/<kernel release>
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

# Without KDIR, build against kmcl's own cached test kernel (built on first
# use by scripts/kernel.sh).
ifeq ($(origin KDIR),undefined)
KDIR = $(shell scripts/kernel.sh kdir $(KFLAVOUR))
KERNEL_DEP := kernel
else
KERNEL_DEP :=
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

.PHONY: all modules samples bench bench-module hyperv-module fuzz modules_install clean rust-analyzer clippy setup \
	kernel host-test check run

all: modules samples

setup:
	@scripts/setup.sh

kernel: setup
	@scripts/kernel.sh build $(KFLAVOUR)

modules: $(KERNEL_DEP)
	$(KMAKE) modules

samples: modules
	$(SMAKE) modules

bench-module: modules
	$(BMAKE) modules

# The real-VMBus-host smoke test module (tests/hyperv/smoke.sh).
hyperv-module: modules
	$(HMAKE) modules

# Fuzzing (host parsers, cargo-fuzz): FUZZ_SECONDS per target; make check
# runs the same targets for 60 s each (KMCL_FUZZ_SECONDS).
FUZZ_SECONDS ?= 300
fuzz: setup
	@scripts/fuzz.sh $(FUZZ_SECONDS)

# Benchmarks (not part of check): host ring (criterion) and the in-kernel
# benchmark in the VM on a non-debug kernel; results in out/bench/.
bench: setup
	@scripts/bench.sh

modules_install: modules
	$(KMAKE) modules_install

clippy: $(KERNEL_DEP)
	$(KMAKE) CLIPPY=1 CLIPPY_DRIVER=$(CLIPPY_DRIVER) modules
	$(SMAKE) CLIPPY=1 CLIPPY_DRIVER=$(CLIPPY_DRIVER) modules
	$(BMAKE) CLIPPY=1 CLIPPY_DRIVER=$(CLIPPY_DRIVER) modules

rust-analyzer: $(KERNEL_DEP)
	$(KMAKE) rust-analyzer

host-test:
	cargo test --manifest-path rust/host/Cargo.toml

check: setup
	@scripts/check.sh

run: setup
	@scripts/run.sh

clean:
	-[ -d "$(KDIR)" ] && $(KMAKE) clean && $(SMAKE) clean && $(BMAKE) clean && $(HMAKE) clean
	-cargo clean --manifest-path rust/host/Cargo.toml
	rm -rf out
