# Thin wrapper: the two commands of the README. CMake does the real work.
#   make run    build (Release) and run brainjar in matrix mode on the embedded model
#   make test   build (Release) and run every test through ctest
#   make test-sanitize   the same under AddressSanitizer + UndefinedBehaviorSanitizer
BUILD    ?= build
BUILD_SAN ?= build-sanitize
RUN_ARGS ?= --mode matrix
JOBS     ?= $(shell nproc)

.PHONY: all build run test test-sanitize bootstrap clean

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

clean:
	rm -rf $(BUILD) $(BUILD_SAN)
