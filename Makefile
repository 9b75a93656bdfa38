# The operator contract (README: Operator commands): each target is a thin call of backupctl and builds what it
# needs first. Settings come from the environment, and from $(ENV_FILE) when that file exists.
SHELL := /bin/bash
BUILD_DIR ?= build
ASAN_DIR ?= build-asan
BACKUPCTL ?= $(BUILD_DIR)/backupctl
ENV_FILE ?= $(wildcard infra/env)
JOBS ?= $(shell nproc)
env_flag = $(if $(ENV_FILE),--env-file $(ENV_FILE))

.PHONY: deps build build-asan test demo push backup-db restore-db backup-objects restore-objects \
	backup-config restore-config backup-all prune status check rehearse bench clean coverage \
	wal-stream backup-base

deps:
	@tools/install-deps.sh

# The operator's build: backupctl and the sample app, no tests (they are built with the sanitizers).
build: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBACKUPCTL_TESTS=OFF >/dev/null
	@cmake --build $(BUILD_DIR)

# Everything and the tests with AddressSanitizer + UndefinedBehaviorSanitizer, the docker tests
# included (their images get the sanitizer runtimes).
build-asan: deps
	@cmake -S . -B $(ASAN_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DBACKUPCTL_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_DIR)

# Unit and integration tests (a real PostgreSQL, a real S3 server, a real docker engine), each
# once, built with AddressSanitizer + UndefinedBehaviorSanitizer; the docker ones (label `docker`)
# one at a time beside the others. One more test at a time than cores: the tests mostly wait
# (servers, fsync, the engine). The compose tests' images are made beside the build
# (tools/warm-test-images.sh: network-bound work beside CPU-bound). The release build is not made
# here: the tests drive the sanitized binaries everywhere, containers included.
TEST_JOBS ?= $(shell echo $$(( $(JOBS) + 1 )))
# report_globals=0: ASan does not register the globals of every translation unit at each start
# (the sanitized backupctl's data segment is 100 MB, mostly their descriptors, from the
# header-only libraries). A start took about 0.5 s of CPU, 0.17 s of it that registration, and
# the tests start backupctl thousands of times;
# what is given up is the check for overflows of global arrays (heap, stack and use-after-free
# are still checked, and leaks at every exit).
TEST_ASAN_OPTIONS ?= detect_leaks=1:abort_on_error=1:report_globals=0
test: deps
	@mkdir -p $(BUILD_DIR); tools/warm-test-images.sh >$(BUILD_DIR)/warm-images.log 2>&1 & warm=$$!; \
	  $(MAKE) --no-print-directory build-asan; built=$$?; \
	  wait $$warm || echo "make test: the compose tests' images were not made ahead (see $(BUILD_DIR)/warm-images.log); they make them" >&2; \
	  exit $$built
	cd $(ASAN_DIR) && ASAN_OPTIONS=$(TEST_ASAN_OPTIONS) \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(TEST_JOBS)

# Line coverage of src/ by the unit and integration tests but the docker ones:
# gcovr's summary line, and a table per folder written to docs/COVERAGE.md. A test that fails
# here is reported but does not stop the report (`make test` is where tests must pass).
COVERAGE_DIR ?= build-coverage
coverage: deps
	@cmake -S . -B $(COVERAGE_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug \
	  -DCMAKE_CXX_FLAGS="--coverage -fprofile-update=atomic" -DCMAKE_EXE_LINKER_FLAGS=--coverage >/dev/null
	@cmake --build $(COVERAGE_DIR)
	@find $(COVERAGE_DIR) -name '*.gcda' -delete
	-cd $(COVERAGE_DIR) && ctest -j $(TEST_JOBS) -LE docker --output-on-failure >ctest.log 2>&1; \
	  tail -3 ctest.log
	@tools/coverage-report.py $(COVERAGE_DIR) docs/COVERAGE.md

demo: build
	@examples/demo/demo.sh

backup-db: build
	@$(BACKUPCTL) $(env_flag) backup db

# make restore-db BACKUP_FILE=infra/data/backup/db/archive_<db>_<ts>.dump CONFIRM=YES
# Without CONFIRM=YES it prints the plan and changes nothing. RESTORE_FLAGS passes more options
# (--online, --in-place, --target-db NAME, --allow-no-meta).
restore-db: build
	@CONFIRM="$(CONFIRM)" $(BACKUPCTL) $(env_flag) restore db --file "$(BACKUP_FILE)" $(RESTORE_FLAGS)

backup-objects: build
	@$(BACKUPCTL) $(env_flag) backup objects

# make restore-objects BACKUP_FILE=infra/data/backup/objects/objects_<label>_<ts>.tar.gz CONFIRM=YES
# RESTORE_FLAGS passes more options (--mode exact, --target BUCKET[/PREFIX] or DIR).
restore-objects: build
	@CONFIRM="$(CONFIRM)" $(BACKUPCTL) $(env_flag) restore objects --file "$(BACKUP_FILE)" $(RESTORE_FLAGS)

backup-config: build
	@$(BACKUPCTL) $(env_flag) backup config

# make restore-config BACKUP_FILE=infra/data/backup/config/config_<ts>.tar.gz MODE=preview
# MODE=apply CONFIRM=YES writes the files (after backing up the current ones).
MODE ?= preview
restore-config: build
	@CONFIRM="$(CONFIRM)" $(BACKUPCTL) $(env_flag) restore config --file "$(BACKUP_FILE)" --mode "$(MODE)"

backup-all: build
	@$(BACKUPCTL) $(env_flag) backup all

# Continuous protection (BACKUP_WAL=stream): the WAL receiver in the foreground, and a base backup.
wal-stream: build
	@$(BACKUPCTL) $(env_flag) wal stream

backup-base: build
	@$(BACKUPCTL) $(env_flag) backup base

prune: build
	@$(BACKUPCTL) $(env_flag) prune

# Copies to BACKUP_REMOTE_URL what it lacks (every backup copies itself there after it anyway).
push: build
	@$(BACKUPCTL) $(env_flag) push

status: build
	@$(BACKUPCTL) $(env_flag) status

check: build
	@$(BACKUPCTL) $(env_flag) check

# The monthly restore rehearsal (plan §5.3); SET=ID picks a set (default: the latest).
SET ?= latest
rehearse: build
	@$(BACKUPCTL) $(env_flag) rehearse --set "$(SET)"

bench: build
	bench/db_backup.sh
	bench/db_restore.sh
	bench/objects.sh

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(COVERAGE_DIR)
