// Encryption at rest with age (https://age-encryption.org, Debian's `age`): backups are piped
// through `age -r <recipient>...` on the way to disk, so the stored file (and the sha256 in its
// meta) is the ciphertext, and stock `age -d -i key.txt FILE` decrypts it. Keys never touch argv
// beyond public recipients and the identity file's path.
#pragma once

#include <atomic>
#include <exception>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "io/pipeline.hpp"
#include "util/process.hpp"

namespace backupctl::io {

// Feeds what it is given to `age` and passes age's output on to `next`.
class AgeEncryptSink : public Sink {
 public:
  AgeEncryptSink(Sink& next, const std::vector<std::string>& recipients);
  ~AgeEncryptSink() override;
  void write(std::span<const char> data) override;
  // Ends age's input, waits for its last output and its exit, then finishes `next`.
  void finish() override;

 private:
  Sink& m_next;
  Child m_child;
  std::thread m_reader;
  std::exception_ptr m_error;
  bool m_finished = false;
};

// The plaintext of an age-encrypted file, from `age -d -i <identity> <file>`. At the end it checks
// age's exit: a wrong key is Error(verification) with a hint about BACKUP_AGE_IDENTITY. A file
// still arriving (io/incoming.hpp) is fed to age's stdin by a thread of its own as it comes.
class AgeDecryptSource : public Source {
 public:
  AgeDecryptSource(const std::filesystem::path& file, const std::filesystem::path& identity);
  ~AgeDecryptSource() override;
  std::size_t read(std::span<char> buf) override;

 private:
  Child m_child;
  std::filesystem::path m_file;
  bool m_done = false;
  std::atomic<bool> m_stop{false};
  std::exception_ptr m_feed_error;
  std::thread m_feeder;
};

// A file's plaintext: the file itself, or its decryption when it ends in ".age". Throws
// Error(usage) for an encrypted file without an identity.
std::unique_ptr<Source> open_plaintext(const std::filesystem::path& file,
                                       const std::filesystem::path& identity);

// "x.dump.age" -> true.
bool is_encrypted(const std::filesystem::path& file);

}  // namespace backupctl::io

namespace backupctl::io {

// The tail every backup file is written through: [age encryption] -> sha256 -> byte count -> the
// file. The observers see the stored bytes, so the meta's sha256 and size are those of the file.
class StoredChain {
 public:
  StoredChain(Sink& file, const std::vector<std::string>& age_recipients)
      : m_count(file), m_sha(m_count) {
    if (!age_recipients.empty()) m_age = std::make_unique<AgeEncryptSink>(m_sha, age_recipients);
  }
  Sink& head() { return m_age ? static_cast<Sink&>(*m_age) : m_sha; }
  std::uint64_t size() const { return m_count.bytes(); }
  const std::string& sha256() const { return m_sha.hex(); }
  bool encrypted() const { return m_age != nullptr; }

 private:
  CountSink m_count;
  Sha256Sink m_sha;
  std::unique_ptr<AgeEncryptSink> m_age;
};

}  // namespace backupctl::io
