// io/zstd.hpp: the pull side of zstd, a cut stream, a frame that fills the last buffer exactly.
#include <gtest/gtest.h>

#include "io/pipeline.hpp"
#include "io/zstd.hpp"
#include "util/error.hpp"

namespace backupctl {

TEST(ZstdSource, PullsWhatWasPushed) {
  std::string data;
  for (int i = 0; i < 200000; ++i) data += std::to_string(i) + "\n";
  io::StringSink compressed;
  {
    io::ZstdCompressSink z(compressed, 3, 1);
    z.write(std::span<const char>(data.data(), data.size()));
    z.finish();
  }
  class StrSource : public io::Source {
   public:
    explicit StrSource(std::string s) : m_s(std::move(s)) {}
    std::size_t read(std::span<char> buf) override {
      std::size_t n = std::min<std::size_t>({buf.size(), m_s.size() - m_pos, 777});
      std::copy_n(m_s.data() + m_pos, n, buf.data());
      m_pos += n;
      return n;
    }
    std::string m_s;
    std::size_t m_pos = 0;
  };
  StrSource src(compressed.data());
  io::ZstdSource unz(src);
  io::StringSink out;
  io::copy(unz, out);
  EXPECT_EQ(out.data(), data);

  StrSource cut(compressed.data().substr(0, compressed.data().size() / 2));
  io::ZstdSource unz2(cut);
  io::NullSink null;
  EXPECT_THROW(io::copy(unz2, null), Error);
}

// A frame whose content ends exactly where the decoder's output buffer does (16 MiB: every WAL
// segment) is whole; it was once taken for a cut stream, the decoder asked for a next frame.
TEST(ZstdDecompressSink, AFrameEndingAtTheEndOfTheOutputBufferIsWhole) {
  const std::string data(16u << 20, '\0');
  io::StringSink compressed;
  io::ZstdCompressSink z(compressed, 3, 0);
  z.write(std::span<const char>(data.data(), data.size()));
  z.finish();
  io::StringSink out;
  io::ZstdDecompressSink unz(out);
  unz.write(std::span<const char>(compressed.data().data(), compressed.data().size()));
  EXPECT_NO_THROW(unz.finish());
  EXPECT_EQ(out.data().size(), data.size());

  io::StringSink out2;
  io::ZstdDecompressSink cut(out2);
  cut.write(std::span<const char>(compressed.data().data(), compressed.data().size() - 4));
  EXPECT_THROW(cut.finish(), Error) << "without its checksum the frame is not whole";
}

}  // namespace backupctl
