#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <filesystem>
#include <random>

#include "io/atomic_file.hpp"
#include "io/pipeline.hpp"
#include "io/zstd.hpp"
#include "util/error.hpp"
#include "util/fs.hpp"

namespace backupctl::io {

namespace {

class StringSource : public Source {
 public:
  explicit StringSource(std::string data, std::size_t step = 7)
      : m_data(std::move(data)), m_step(step) {}
  std::size_t read(std::span<char> buf) override {
    std::size_t n = std::min({buf.size(), m_step, m_data.size() - m_pos});
    std::copy_n(m_data.data() + m_pos, n, buf.data());
    m_pos += n;
    return n;
  }

 private:
  std::string m_data;
  std::size_t m_step;
  std::size_t m_pos = 0;
};

std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(gen() & 0xff);
  return s;
}

}  // namespace

TEST(Pipeline, Sha256MatchesKnownVectors) {
  // FIPS 180-2 examples.
  struct {
    std::string input, digest;
  } cases[] = {
      {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
      {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
  };
  for (const auto& c : cases) {
    StringSource src(c.input);
    StringSink out;
    Sha256Sink sha(out);
    copy(src, sha);
    EXPECT_EQ(sha.hex(), c.digest);
    EXPECT_EQ(out.data(), c.input);  // observers pass bytes through unchanged
  }
}

TEST(Pipeline, CountsBytesAndReportsProgress) {
  std::string data = random_bytes(3 * kChunkSize + 123, 1);
  StringSource src(data, kChunkSize);
  StringSink out;
  CountSink count(out);
  std::vector<std::uint64_t> seen;
  std::uint64_t n = copy(src, count, [&](std::uint64_t b) { seen.push_back(b); });
  EXPECT_EQ(n, data.size());
  EXPECT_EQ(count.bytes(), data.size());
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back(), data.size());
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
}

TEST(Pipeline, ZstdRoundTripsAndHashesTheStoredBytes) {
  std::string data = random_bytes(200000, 2) + std::string(3'000'000, 'a');
  StringSink stored;
  Sha256Sink sha(stored);
  ZstdCompressSink zstd(sha, 3, 2);
  StringSource src(data, 65536);
  copy(src, zstd);
  EXPECT_LT(stored.data().size(), data.size() / 5);

  // The digest is of the compressed bytes, as they sit in the file.
  StringSink again;
  Sha256Sink sha2(again);
  StringSource src2(stored.data());
  copy(src2, sha2);
  EXPECT_EQ(sha.hex(), sha2.hex());

  StringSink restored;
  ZstdDecompressSink unzstd(restored);
  StringSource src3(stored.data(), 1000);
  copy(src3, unzstd);
  EXPECT_EQ(restored.data(), data);
  EXPECT_EQ(unzstd.decompressed_bytes(), data.size());
}

TEST(Pipeline, TruncatedOrCorruptZstdIsAVerificationError) {
  StringSink stored;
  ZstdCompressSink zstd(stored, 3, 1);
  StringSource src(random_bytes(100000, 3));
  copy(src, zstd);
  std::string truncated = stored.data().substr(0, stored.data().size() - 10);
  {
    NullSink null;
    ZstdDecompressSink unzstd(null);
    StringSource s(truncated);
    try {
      copy(s, unzstd);
      FAIL() << "truncation not detected";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::verification);
    }
  }
  std::string corrupt = stored.data();
  corrupt[corrupt.size() / 2] ^= 0x55;
  {
    NullSink null;
    ZstdDecompressSink unzstd(null);
    StringSource s(corrupt);
    EXPECT_THROW(copy(s, unzstd), Error);
  }
}

TEST(AtomicFile, AppearsOnlyOnCommitWithMode0600) {
  TempDir dir;
  auto final_path = dir.path() / "archive_x_20260226_031500.dump";
  {
    auto sink = AtomicFileSink::try_create(final_path);
    ASSERT_TRUE(sink);
    sink->write(std::string_view("hello"));
    EXPECT_TRUE(std::filesystem::exists(sink->partial_path()));
    EXPECT_FALSE(std::filesystem::exists(final_path));
    sink->commit();
  }
  EXPECT_TRUE(std::filesystem::exists(final_path));
  EXPECT_FALSE(std::filesystem::exists(final_path.string() + ".partial"));
  EXPECT_EQ(read_file(final_path), "hello");
  struct stat st{};
  ASSERT_EQ(::stat(final_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(AtomicFile, UncommittedIsRemovedAndNeverReplacesAFinishedFile) {
  TempDir dir;
  auto final_path = dir.path() / "f.dump";
  {
    auto sink = AtomicFileSink::try_create(final_path);
    ASSERT_TRUE(sink);
    sink->write(std::string_view("partial data"));
  }  // destroyed without commit: an error or a signal unwound past it
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));

  write_file_atomic(final_path, "first");
  auto second = AtomicFileSink::try_create(final_path);
  ASSERT_TRUE(second);
  second->write(std::string_view("second"));
  EXPECT_THROW(second->commit(), Error);
  EXPECT_EQ(read_file(final_path), "first");
}

TEST(AtomicFile, SecondWriterOfTheSameNameIsRefused) {
  TempDir dir;
  auto final_path = dir.path() / "f.dump";
  auto first = AtomicFileSink::try_create(final_path);
  ASSERT_TRUE(first);
  EXPECT_FALSE(AtomicFileSink::try_create(final_path));
}

TEST(AtomicFile, DiskFullIsAnIoErrorWithAHint) {
  // /dev/full fails every write with ENOSPC.
  Fd full(::open("/dev/full", O_WRONLY | O_CLOEXEC));
  ASSERT_TRUE(full);
  FdSink sink(full.get(), "/dev/full");
  StringSource src("some bytes");
  try {
    copy(src, sink);
    FAIL() << "write to /dev/full succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::io);
    EXPECT_NE(std::string(e.what()).find("No space left"), std::string::npos);
    EXPECT_NE(e.hint().find("BACKUP_DIR"), std::string::npos);
  }
}

// A meta or roles file someone else wrote is read into memory only up to a limit.
TEST(LimitSink, PassesUpToItsLimitAndRefusesMore) {
  StringSink out;
  LimitSink limited(out, 2u << 20, "db/x.dump.meta on the remote");
  StringSource small(std::string(1u << 20, 'a'), 65536);
  copy(small, limited);
  EXPECT_EQ(out.data().size(), 1u << 20);
  StringSink out2;
  LimitSink limited2(out2, 2u << 20, "db/x.dump.meta on the remote");
  StringSource big(std::string(3u << 20, 'a'), 65536);
  try {
    copy(big, limited2);
    FAIL() << "a 3 MiB file passed a 2 MiB limit";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::verification);
    EXPECT_NE(std::string(e.what()).find("db/x.dump.meta on the remote is larger than 2.00 MiB (2097152 bytes)"), std::string::npos) << e.what();
  }
  EXPECT_LE(out2.data().size(), 2u << 20);
}

}  // namespace backupctl::io
