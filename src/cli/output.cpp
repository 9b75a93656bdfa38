#include "cli/output.hpp"

#include <fmt/format.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>

#include "util/format.hpp"

namespace backupctl {
namespace {

class TerminalProgress : public Progress {
 public:
  void start(std::string_view label) override {
    m_label = label;
    m_start = std::chrono::steady_clock::now();
    m_last = {};
    m_active = true;
    m_bytes = 0;
  }

  void update(std::uint64_t bytes) override {
    m_bytes = bytes;
    auto now = std::chrono::steady_clock::now();
    if (now - m_last < std::chrono::milliseconds(250)) return;
    m_last = now;
    draw(now);
  }

  void finish() override {
    if (!m_active) return;
    draw(std::chrono::steady_clock::now());
    std::fputc('\n', stderr);
    m_active = false;
  }

 private:
  void draw(std::chrono::steady_clock::time_point now) {
    double secs = std::chrono::duration<double>(now - m_start).count();
    double rate = secs > 0 ? static_cast<double>(m_bytes) / secs : 0;
    auto whole = static_cast<long>(secs);
    std::fprintf(stderr, "\r\033[K%s  %s  %s/s  %ld:%02ld", m_label.c_str(),
                 human_bytes(m_bytes).c_str(), human_bytes(static_cast<std::uint64_t>(rate)).c_str(),
                 whole / 60, whole % 60);
    std::fflush(stderr);
  }

  std::string m_label;
  std::chrono::steady_clock::time_point m_start{}, m_last{};
  std::uint64_t m_bytes = 0;
  bool m_active = false;
};

}  // namespace

void setup_logging(const OutputOptions& options) {
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("backupctl", sink);
  logger->set_pattern("%Y-%m-%dT%H:%M:%S%z %l %v");
  logger->set_level(options.verbose ? spdlog::level::debug
                                    : (options.quiet ? spdlog::level::warn : spdlog::level::info));
  spdlog::set_default_logger(logger);
}

std::unique_ptr<Progress> make_progress(const OutputOptions& options) {
  if (options.quiet || options.json || !::isatty(STDERR_FILENO)) {
    return std::make_unique<NoProgress>();
  }
  return std::make_unique<TerminalProgress>();
}

void print_json(const nlohmann::json& value) { std::cout << value.dump(2) << std::endl; }

void report_error(const Error& error, const OutputOptions& options) {
  std::fprintf(stderr, "backupctl: error: %s\n", error.what());
  if (!error.hint().empty()) std::fprintf(stderr, "hint: %s\n", error.hint().c_str());
  if (options.json) {
    print_json({{"ok", false},
                {"error",
                 {{"code", error_code_name(error.code())},
                  {"message", error.what()},
                  {"hint", error.hint()},
                  {"exit_status", exit_status(error.code())}}}});
  }
}

}  // namespace backupctl
