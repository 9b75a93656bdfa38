#include "io/age.hpp"

#include <csignal>

#include "io/incoming.hpp"
#include "util/error.hpp"
#include "util/fs.hpp"

namespace backupctl::io {

namespace {

Child spawn_age(std::vector<std::string> argv, Stdio in) {
  try {
    return Child::spawn({.argv = std::move(argv), .in = in, .out = Stdio::pipe, .err = Stdio::pipe});
  } catch (const Error& e) {
    if (e.code() == ErrorCode::not_found) {
      throw Error(ErrorCode::not_found, "cannot run age: it is not installed",
                  "apt-get install age (encryption is on because BACKUP_AGE_RECIPIENTS or a .age file)");
    }
    throw;
  }
}

std::vector<std::string> encrypt_argv(const std::vector<std::string>& recipients) {
  std::vector<std::string> argv = {"age"};
  for (const auto& r : recipients) {
    argv.push_back("-r");
    argv.push_back(r);
  }
  return argv;
}

}  // namespace

bool is_encrypted(const std::filesystem::path& file) {
  std::string name = file.filename().string();
  return name.size() > 4 && name.ends_with(".age");
}

AgeEncryptSink::AgeEncryptSink(Sink& next, const std::vector<std::string>& recipients)
    : m_next(next), m_child(spawn_age(encrypt_argv(recipients), Stdio::pipe)) {
  m_reader = std::thread([this] {
    try {
      std::vector<char> buf(1 << 20);
      for (;;) {
        std::size_t n = m_child.read_output(buf);
        if (n == 0) break;
        m_next.write(std::span<const char>(buf.data(), n));
      }
    } catch (...) {
      m_error = std::current_exception();
    }
  });
}

AgeEncryptSink::~AgeEncryptSink() {
  if (m_reader.joinable()) {
    m_child.stdin_pipe().reset();
    m_child.kill(SIGTERM);
    m_reader.join();
  }
}

void AgeEncryptSink::write(std::span<const char> data) {
  if (m_error) std::rethrow_exception(m_error);
  write_all(m_child.stdin_pipe().get(), data.data(), data.size(), "cannot write to age");
}

void AgeEncryptSink::finish() {
  m_child.stdin_pipe().reset();
  m_reader.join();
  if (m_error) std::rethrow_exception(m_error);
  ExitStatus status = m_child.wait();
  if (!status.ok()) {
    throw Error(ErrorCode::tool_failed,
                "age failed (" + status.describe() + "): " + error_line(m_child.stderr_tail()),
                "check BACKUP_AGE_RECIPIENTS (age1... public keys)");
  }
  m_next.finish();
}

AgeDecryptSource::AgeDecryptSource(const std::filesystem::path& file, const std::filesystem::path& identity)
    : m_child(IncomingFile::find(file) ? spawn_age({"age", "-d", "-i", identity.string()}, Stdio::pipe)
                                       : spawn_age({"age", "-d", "-i", identity.string(), file.string()}, Stdio::null)),
      m_file(file) {
  auto incoming = IncomingFile::find(file);
  if (!incoming) return;
  auto source = incoming->open(&m_stop);
  m_feeder = std::thread([this, source = std::move(source)] {
    try {
      ChildStdinSink sink(m_child.stdin_pipe(), "age");
      copy(*source, sink);
    } catch (...) {
      m_feed_error = std::current_exception();
    }
    m_child.stdin_pipe().reset();  // age sees the end (and fails on a cut-off stream)
  });
}

AgeDecryptSource::~AgeDecryptSource() {
  if (!m_feeder.joinable()) return;
  m_stop = true;
  if (!m_done) m_child.kill(SIGTERM);  // a feeder blocked on a full pipe gets EPIPE
  m_feeder.join();
}

std::size_t AgeDecryptSource::read(std::span<char> buf) {
  if (m_done) return 0;
  std::size_t n = m_child.read_output(buf);
  if (n > 0) return n;
  m_done = true;
  if (m_feeder.joinable()) {
    m_feeder.join();
    // The download's own error (a damaged copy, a signal) says more than age's "unexpected EOF".
    if (m_feed_error) std::rethrow_exception(m_feed_error);
  }
  ExitStatus status = m_child.wait();
  if (!status.ok()) {
    std::string why = error_line(m_child.stderr_tail());
    throw Error(ErrorCode::verification, "cannot decrypt " + m_file.filename().string() + ": " + why,
                "BACKUP_AGE_IDENTITY must be the key file (age-keygen output) of a recipient it was "
                "encrypted to");
  }
  return 0;
}

std::unique_ptr<Source> open_plaintext(const std::filesystem::path& file, const std::filesystem::path& identity) {
  if (!is_encrypted(file)) {
    if (auto incoming = IncomingFile::find(file)) return incoming->open();
    struct OwnedFdSource : public Source {
      explicit OwnedFdSource(const std::filesystem::path& p) : fd(open_read(p)), src(fd.get(), p.string()) {}
      std::size_t read(std::span<char> buf) override { return src.read(buf); }
      Fd fd;
      FdSource src;
    };
    return std::make_unique<OwnedFdSource>(file);
  }
  if (identity.empty()) {
    throw Error(ErrorCode::usage, file.filename().string() + " is encrypted and BACKUP_AGE_IDENTITY is not set",
                "set BACKUP_AGE_IDENTITY to the age key file (or decrypt it by hand: age -d -i key.txt FILE)");
  }
  std::error_code ec;
  if (!std::filesystem::exists(identity, ec)) {
    throw Error(ErrorCode::not_found, "BACKUP_AGE_IDENTITY " + identity.string() + " does not exist",
                "point it at the age key file");
  }
  return std::make_unique<AgeDecryptSource>(file, identity);
}

}  // namespace backupctl::io
