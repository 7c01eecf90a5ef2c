# Thin wrapper: the two commands of the README. CMake does the real work.
#   make run    build (Release) and run brainjar in matrix mode on the embedded model
#   make test   build (Release) and run every test through ctest
#   make test-sanitize   the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   make deb    the Debian package (build/deb/brainjar_VERSION_ARCH.deb); ARCH=arm64 cross-builds it
#   make soak   a long run (SOAK_MINUTES=5) that shows memory flat after warm-up
BUILD    ?= build
BUILD_SAN ?= build-sanitize
RUN_ARGS ?= --mode matrix
JOBS     ?= $(shell nproc)

.PHONY: all build run test test-sanitize soak bootstrap clean deb

all: build

bootstrap:
	@mkdir -p $(BUILD)
	@scripts/bootstrap > $(BUILD)/bootstrap.args

build: bootstrap
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $$(cat $(BUILD)/bootstrap.args) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	$(BUILD)/brainjar run $(RUN_ARGS)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-sanitize: bootstrap
	@mkdir -p $(BUILD_SAN)
	@cmake -S . -B $(BUILD_SAN) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBJ_SANITIZE=ON $$(cat $(BUILD)/bootstrap.args) >/dev/null
	@cmake --build $(BUILD_SAN) -j $(JOBS)
	@cd $(BUILD_SAN) && ctest --output-on-failure -j $(JOBS)

# A long run (SOAK_MINUTES, default 5) that shows RSS flat after warm-up; not part of make test.
soak: build
	python3 bench/soak/soak.py --brainjar $(BUILD)/brainjar --model $(BUILD)/models/brainjar-tiny.gguf

# The Debian package of this machine's architecture, or of ARCH=arm64 (cross-built; debhelper;
# docs/OPERATIONS.md): build/deb/*.deb
deb:
	scripts/make-deb $(if $(ARCH),--arch $(ARCH)) $(BUILD)/deb

clean:
	rm -rf $(BUILD) $(BUILD_SAN)
