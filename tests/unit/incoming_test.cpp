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

}  // namespace backupctl::io
