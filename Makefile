# The operator contract (DESIGN.md): each target is a thin call of backupctl and builds what it
# needs first. Settings come from the environment, and from $(ENV_FILE) when that file exists.
SHELL := /bin/bash
BUILD_DIR ?= build
ASAN_DIR ?= build-asan
BACKUPCTL ?= $(BUILD_DIR)/backupctl
ENV_FILE ?= $(wildcard infra/env)
JOBS ?= $(shell nproc)
env_flag = $(if $(ENV_FILE),--env-file $(ENV_FILE))

.PHONY: deps build build-asan test demo backup-db restore-db bench clean

deps:
	@tools/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD_DIR)

build-asan: deps
	@cmake -S . -B $(ASAN_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DBACKUPCTL_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_DIR)

# Unit and integration tests (a real PostgreSQL per test), then all of them again built with
# AddressSanitizer + UndefinedBehaviorSanitizer.
test: build build-asan
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)
	cd $(ASAN_DIR) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS)

demo: build
	@examples/demo/demo.sh

backup-db: build
	@$(BACKUPCTL) $(env_flag) backup db

# make restore-db BACKUP_FILE=infra/data/backup/db/archive_<db>_<ts>.dump CONFIRM=YES
# Without CONFIRM=YES it prints the plan and changes nothing. RESTORE_FLAGS passes more options
# (--online, --in-place, --target-db NAME, --allow-no-meta).
restore-db: build
	@CONFIRM="$(CONFIRM)" $(BACKUPCTL) $(env_flag) restore db --file "$(BACKUP_FILE)" $(RESTORE_FLAGS)

bench: build
	bench/db_backup.sh
	bench/db_restore.sh

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR)
