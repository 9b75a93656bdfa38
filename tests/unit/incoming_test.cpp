// io::IncomingFile: the file a restore reads while it downloads. A reader gets the bytes in order
// as they arrive, sees the end only once the writer declared them complete (checked), and gets
// the writer's failure instead of an end, even after every byte arrived.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "io/age.hpp"
#include "io/incoming.hpp"
#include "util/error.hpp"
#include "util/fs.hpp"

namespace backupctl::io {

namespace {

std::string read_all(Source& source) {
  std::string out;
  std::vector<char> buf(1000);
  for (std::size_t n; (n = source.read(buf)) > 0;) out.append(buf.data(), n);
  return out;
}

ErrorCode code_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.code();
  }
  ADD_FAILURE() << "no error";
  return ErrorCode::internal;
}

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  return s;
}

// The writer's side of a download: `data` in `chunk`-byte appends, then complete().
void append_all(IncomingFile& file, const std::string& data, std::size_t chunk) {
  for (std::size_t at = 0; at < data.size(); at += chunk)
    file.append(std::span<const char>(data.data() + at, std::min(chunk, data.size() - at)));
  file.complete();
}

}  // namespace

TEST(IncomingFile, AReaderGetsTheBytesAsTheyArriveAndItsEndOnlyOnceComplete) {
  TempDir dir;
  const std::string data = pattern(300000);
  auto file = IncomingFile::create(dir.path() / "db" / "x.dump", data.size(), dir.path());
  EXPECT_TRUE(is_incoming(dir.path() / "db" / "x.dump"));
  EXPECT_TRUE(fs::is_empty(dir.path())) << "the spool has a name";
  std::atomic<bool> completed{false};
  std::thread writer([&] {
    for (std::size_t at = 0; at < data.size(); at += 4096) {
      file->append(
          std::span<const char>(data.data() + at, std::min<std::size_t>(4096, data.size() - at)));
      if (at % 65536 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    std::this_thread::sleep_for(
        std::chrono::milliseconds(150));  // every byte there, not yet checked
    completed = true;
    file->complete();
  });
  // Through the name, as every reader of a dump opens it.
  auto source = open_plaintext(dir.path() / "db" / "x.dump", {});
  std::string got = read_all(*source);
  EXPECT_TRUE(completed) << "the end came before the writer declared the file complete";
  writer.join();
  EXPECT_EQ(got, data);
  EXPECT_EQ(read_all(*file->open()), data) << "a second reader, after the end";
}

// pg_dump's output: its size is known only at its end.
TEST(IncomingFile, AFileOfUnknownSizeEndsWhereItsWriterCompletedIt) {
  TempDir dir;
  const std::string data = pattern(200000);
  auto file = IncomingFile::create(dir.path() / "r.dump", IncomingFile::kUnknownSize, dir.path());
  EXPECT_EQ(file->size(), IncomingFile::kUnknownSize);
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    append_all(*file, data, 7000);
  });
  EXPECT_EQ(read_all(*file->open()), data);
  writer.join();
  EXPECT_EQ(file->size(), data.size());
  std::vector<char> buf(10);
  EXPECT_EQ(file->read_at(data.size(), buf, nullptr), 0u) << "the end, once complete";
}

TEST(IncomingFile, AFailureReachesEveryReaderEvenAfterTheLastByte) {
  TempDir dir;
  const std::string data = pattern(5000);
  auto file = IncomingFile::create(dir.path() / "y.dump", data.size(), dir.path());
  file->append(data);
  auto early = file->open();
  std::vector<char> buf(100);
  EXPECT_EQ(early->read(buf), 100u) << "bytes that arrived are read before the end";
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    file->fail(std::make_exception_ptr(
        Error(ErrorCode::verification, "y.dump does not match the sha256 of its meta")));
  });
  // A reader that has every byte waits for the verdict, and the verdict is the failure.
  EXPECT_EQ(code_of([&] { read_all(*file->open()); }), ErrorCode::verification);
  writer.join();
  // From then on even bytes that had arrived are refused: a reader cannot go on with a copy
  // known to be bad.
  EXPECT_EQ(code_of([&] { early->read(buf); }), ErrorCode::verification);
}

TEST(IncomingFile, TheWriterIsHeldToTheSizeAndToACancel) {
  TempDir dir;
  auto file = IncomingFile::create(dir.path() / "z.dump", 10, dir.path());
  file->append(std::string_view("12345678"));
  EXPECT_EQ(code_of([&] { file->append(std::string_view("abc")); }), ErrorCode::verification)
      << "past the meta's size";
  EXPECT_EQ(code_of([&] { IncomingFile::create(dir.path() / "z.dump", 1, dir.path()); }),
            ErrorCode::usage)
      << "the same name twice";
  file->cancel();
  EXPECT_EQ(code_of([&] { file->append(std::string_view("9")); }), ErrorCode::interrupted);
  // A reader told to stop does not wait for bytes that will not come.
  std::atomic<bool> stop{false};
  auto reader = file->open(&stop);
  std::vector<char> buf(100);
  EXPECT_EQ(reader->read(buf), 8u);
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    stop = true;
  });
  EXPECT_EQ(code_of([&] { reader->read(buf); }), ErrorCode::interrupted);
  stopper.join();
  reader.reset();
  file.reset();
  EXPECT_FALSE(is_incoming(dir.path() / "z.dump")) << "the name stayed registered";
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

// The load of a restore reads the dump once: after release_as_read() the spool keeps a window
// ahead of the reader instead of the whole file, and the bytes read are gone from the disk.
TEST(IncomingFile, ReadOnceTheSpoolStaysAWindowAheadOfTheReader) {
  TempDir dir;
  constexpr std::uint64_t kWindow = 8u << 20;
  const std::string data = pattern(40u << 20);
  auto file = IncomingFile::create(dir.path() / "w.dump", data.size(), dir.path(), kWindow);
  auto reader = file->open();
  file->release_as_read();
  std::atomic<std::uint64_t> most_ahead{0}, most_spooled{0};
  std::atomic<std::uint64_t> read_so_far{0};
  std::thread writer([&] {
    for (std::size_t at = 0; at < data.size(); at += 1u << 20) {
      file->append(std::span<const char>(data.data() + at, 1u << 20));
      most_ahead = std::max<std::uint64_t>(most_ahead, file->arrived() - read_so_far);
      most_spooled = std::max<std::uint64_t>(most_spooled, file->spooled());
    }
    file->complete();
  });
  std::string got;
  std::vector<char> buf(300000);
  for (std::size_t n; (n = reader->read(buf)) > 0;) {
    got.append(buf.data(), n);
    read_so_far = got.size();
    if (got.size() % (4u << 20) < buf.size()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  writer.join();
  EXPECT_EQ(got, data);
  // The writer may add one append (1 MiB) to a window it was within, and the reader's count here
  // lags its position by one read.
  EXPECT_LE(most_ahead, kWindow + (1u << 20) + buf.size());
  // The window, one append, the bytes of the reader's granule not yet dropped (4 MiB), and one
  // more granule whose punch may still be under way as the writer looks (the whole file: 40 MiB).
  EXPECT_LE(most_spooled, kWindow + (9u << 20) + buf.size()) << "the spool grew to the whole file";
  EXPECT_LE(file->spooled(), 5u << 20) << "what was read is still on disk";
  // A reader opened now cannot read the dropped bytes: it is refused, not given holes (zeros).
  EXPECT_EQ(code_of([&] { read_all(*file->open()); }), ErrorCode::internal);
}

TEST(IncomingFile, ReadOnceAWaitingReaderIsNeverHeldUpByTheWindow) {
  TempDir dir;
  const std::string data = pattern(6u << 20);
  auto file = IncomingFile::create(dir.path() / "v.dump", data.size(), dir.path(), 1u << 20);
  // A reader that stays at the start and one that reads to the end: the writer goes past the
  // window while the second waits for bytes (else each would wait for the other).
  auto idle = file->open();
  file->release_as_read();
  std::thread writer([&] { append_all(*file, data, 65536); });
  EXPECT_EQ(read_all(*file->open()), data);
  writer.join();
  std::vector<char> buf(10);
  EXPECT_EQ(idle->read(buf), 10u) << "the idle reader's bytes were dropped";
}

TEST(IncomingFile, ReadOnceAWriterHeldByTheWindowGoesOnAsTheReaderMovesAndStopsOnACancel) {
  TempDir dir;
  const std::string chunk = pattern(1u << 20);
  auto file = IncomingFile::create(dir.path() / "u.dump", 10u << 20, dir.path(), 2u << 20);
  auto reader = file->open();
  file->release_as_read();
  file->append(chunk);
  file->append(chunk);
  // The window is full: the next append waits until the reader has read 1 MiB.
  std::thread mover([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::vector<char> buf(1u << 20);
    EXPECT_EQ(reader->read(buf), buf.size());
  });
  const auto t0 = std::chrono::steady_clock::now();
  file->append(chunk);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(90)) << "it did not wait";
  mover.join();
  EXPECT_EQ(file->arrived(), 3u << 20);
  // Full again; a reader closing does not let it on (the load may not be open yet), a cancel does.
  reader.reset();
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    file->cancel();
  });
  const auto t1 = std::chrono::steady_clock::now();
  EXPECT_EQ(code_of([&] { file->append(chunk); }), ErrorCode::interrupted);
  EXPECT_GE(std::chrono::steady_clock::now() - t1, std::chrono::milliseconds(190)) << "it did not wait";
  EXPECT_LT(std::chrono::steady_clock::now() - t1, std::chrono::seconds(5));
  canceller.join();
  EXPECT_EQ(file->arrived(), 3u << 20);
}

// IncomingBackup::wait() after a load that stopped reading early: the writer is held by the
// window (its last reader is gone), and a read of the end lets it finish instead of waiting on it.
TEST(IncomingFile, ReadOnceAReadOfTheEndLetsAHeldWriterFinish) {
  TempDir dir;
  const std::string data = pattern(8u << 20);
  auto file = IncomingFile::create(dir.path() / "s.dump", data.size(), dir.path(), 2u << 20);
  auto reader = file->open();
  file->release_as_read();
  std::atomic<bool> done{false};
  std::thread writer([&] {
    append_all(*file, data, 1u << 20);
    done = true;
  });
  std::vector<char> buf(1u << 20);
  EXPECT_EQ(reader->read(buf), buf.size());
  reader.reset();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_FALSE(done) << "the window did not hold the writer";
  std::vector<char> byte(1);
  EXPECT_EQ(file->read_at(file->size(), byte, nullptr), 0u);  // the end: every byte, completed
  EXPECT_EQ(file->arrived(), data.size());
  writer.join();
}

// Before the last reader is open every new reader starts at the first byte: the writer stops a
// window in, goes on while a reader asks for more (the plan's table of contents may be longer
// than the window), and nothing is dropped.
TEST(IncomingFile, BeforeTheLoadTheWriterStopsAWindowInUnlessAReaderAsksForMore) {
  TempDir dir;
  const std::string data = pattern(8u << 20);
  auto file = IncomingFile::create(dir.path() / "t.dump", data.size(), dir.path(), 2u << 20);
  std::thread writer([&] {
    try {
      append_all(*file, data, 1u << 20);
    } catch (const Error& e) {
      ADD_FAILURE() << e.what();
    }
  });
  for (int i = 0; i < 1000 && file->arrived() < (2u << 20); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // time to go on, if it would
  EXPECT_EQ(file->arrived(), 2u << 20) << "the writer did not stop a window in";
  EXPECT_EQ(read_all(*file->open()), data);
  writer.join();
  EXPECT_EQ(read_all(*file->open()), data) << "a reader after the first one";
}

}  // namespace backupctl::io
