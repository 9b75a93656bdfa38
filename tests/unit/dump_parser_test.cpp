// pg/dump_parser.hpp: what the dump parser says when its source fails.
#include <gtest/gtest.h>

#include "io/pipeline.hpp"
#include "pg/dump_parser.hpp"
#include "util/error.hpp"

namespace backupctl {

TEST(DumpParser, TheSourcesErrorIsNotANoHeader) {
  struct Interrupted : io::Source {
    std::size_t read(std::span<char>) override {
      throw Error(ErrorCode::interrupted, "interrupted by SIGHUP");
    }
  } interrupted;
  try {
    (void)read_dump_header(interrupted);
    FAIL() << "the header reader swallowed the interruption";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::interrupted) << e.what();
  }
  io::StringSink sink;
  DumpInflater inflater(sink);
  try {
    inflater.run(interrupted);
    FAIL() << "the inflater swallowed the interruption";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::interrupted) << e.what();
  }
  // Shorter than the magic: not an archive, still.
  struct Short : io::Source {
    bool done = false;
    std::size_t read(std::span<char> buf) override {
      if (std::exchange(done, true)) return 0;
      buf[0] = 'P';
      return 1;
    }
  } short_file;
  EXPECT_FALSE(read_dump_header(short_file).has_value());
}

}  // namespace backupctl
