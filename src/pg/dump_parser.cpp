#include "pg/dump_parser.hpp"

#include <isa-l/igzip_lib.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "util/error.hpp"
#include "util/signals.hpp"

namespace backupctl {
namespace {

// pg_dump compresses each table's data as one zlib stream. ISA-L's inflate decodes it in half
// of zlib's CPU (1 GB of COPY text at level 1, in pg_dump's 4 KB chunks: 2.1 s against 4.1 s),
// and on 2 cores that CPU is shared with the server's COPY. ISAL_ZLIB parses the zlib header
// and checks the Adler-32 trailer as zlib does. The state is 85 KiB: on the heap, one per stream.
std::unique_ptr<inflate_state> new_zlib_inflate() {
  auto st = std::make_unique<inflate_state>();
  isal_inflate_init(st.get());
  st->crc_flag = ISAL_ZLIB;
  return st;
}

constexpr int kBlkData = 1;
constexpr int kBlkBlobs = 3;
constexpr int kOffsetPosNotSet = 1;
constexpr int kOffsetPosSet = 2;
constexpr std::size_t kOutChunk = 128 * 1024;
constexpr std::size_t kInChunk = 1 << 20;

Error malformed(const std::string& why) {
  // An archive that ends early after a signal was cut by it (its reader, a child, was stopped).
  check_interrupted();
  return Error(ErrorCode::verification, "the archive is malformed: " + why,
               "the file is damaged; use another backup");
}

// Pulls bytes from a Source with a buffer; optionally copies what it reads to an output buffer
// (the header and table of contents pass through unchanged, except the fields we rewrite).
class Reader {
 public:
  // The buffer is not zeroed: reads fill it, and a short stream touches only the pages it uses
  // (the fuzz test opens thousands of them).
  explicit Reader(io::Source& in) : m_in(in), m_buf(std::make_unique_for_overwrite<char[]>(kBufSize)) {}

  // -1 at the end of the stream.
  int byte_or_eof() {
    if (m_pos == m_len && !fill()) return -1;
    unsigned char c = static_cast<unsigned char>(m_buf[m_pos++]);
    if (m_copy) m_copied.push_back(static_cast<char>(c));
    return c;
  }
  int byte() {
    int c = byte_or_eof();
    if (c < 0) throw malformed("it ends early (truncated file)");
    return c;
  }
  void exact(char* dst, std::size_t n) {
    while (n > 0) {
      if (m_pos == m_len && !fill()) throw malformed("it ends early (truncated file)");
      std::size_t k = std::min(n, m_len - m_pos);
      std::memcpy(dst, m_buf.get() + m_pos, k);
      if (m_copy) m_copied.append(m_buf.get() + m_pos, k);
      m_pos += k;
      dst += k;
      n -= k;
    }
  }
  std::int64_t integer(int int_size) {
    int sign = byte();
    std::int64_t v = 0;
    for (int b = 0; b < int_size; ++b) v |= static_cast<std::int64_t>(byte()) << (8 * b);
    return sign ? -v : v;
  }
  // nullopt for a NULL string. Read piecewise: a damaged length must fail at the end of the
  // input, not allocate a gigabyte first.
  std::optional<std::string> string(int int_size) {
    std::int64_t len = integer(int_size);
    if (len < 0) return std::nullopt;
    if (len > (1 << 30)) throw malformed("a string of " + std::to_string(len) + " bytes");
    std::string s;
    for (std::size_t left = static_cast<std::size_t>(len); left > 0;) {
      std::size_t n = std::min<std::size_t>(left, 1 << 16);
      std::size_t at = s.size();
      s.resize(at + n);
      exact(s.data() + at, n);
      left -= n;
    }
    return s;
  }

  void set_copy(bool on) { m_copy = on; }
  std::string take_copied() { return std::exchange(m_copied, {}); }

 private:
  bool fill() {
    m_pos = 0;
    m_len = m_in.read(std::span<char>(m_buf.get(), kBufSize));
    return m_len > 0;
  }
  io::Source& m_in;
  static constexpr std::size_t kBufSize = 1 << 20;
  std::unique_ptr<char[]> m_buf;
  std::size_t m_pos = 0, m_len = 0;
  bool m_copy = false;
  std::string m_copied;
};

class Writer {
 public:
  Writer(io::Sink& out, int int_size) : m_out(out), m_int_size(int_size) {}
  void raw(std::string_view s) { m_out.write(std::span<const char>(s.data(), s.size())); }
  void integer(std::int64_t v) {
    char b[17];
    b[0] = v < 0 ? 1 : 0;
    std::uint64_t a = static_cast<std::uint64_t>(v < 0 ? -v : v);
    for (int i = 0; i < m_int_size; ++i) b[1 + i] = static_cast<char>((a >> (8 * i)) & 0xff);
    m_out.write(std::span<const char>(b, static_cast<std::size_t>(1 + m_int_size)));
  }
  void chunk(const char* data, std::size_t n) {
    if (n == 0) return;
    integer(static_cast<std::int64_t>(n));
    m_out.write(std::span<const char>(data, n));
  }

 private:
  io::Sink& m_out;
  int m_int_size;
};

struct Header {
  DumpHeader h;
  int int_size = 4;
  int off_size = 8;
};

// Reads the header; with the reader copying, everything before the compression field is in the
// copy buffer when this returns.
std::optional<Header> parse_header_start(Reader& r) {
  // A file shorter than the magic is not an archive; what the source throws (a signal, a file
  // that does not decrypt) is its own error, not "no header".
  char magic[5];
  for (char& c : magic) {
    int b = r.byte_or_eof();
    if (b < 0) return std::nullopt;
    c = static_cast<char>(b);
  }
  if (std::memcmp(magic, "PGDMP", 5) != 0) return std::nullopt;
  Header h;
  h.h.vmaj = r.byte();
  h.h.vmin = r.byte();
  h.h.vrev = r.byte();
  h.int_size = r.byte();
  h.off_size = r.byte();
  int format = r.byte();
  if (h.int_size < 1 || h.int_size > 8 || h.off_size < 1 || h.off_size > 16) {
    throw malformed("implausible integer sizes in the header");
  }
  if (format != 1) throw malformed("not a custom-format archive (format " + std::to_string(format) + ")");
  return h;
}

}  // namespace

bool DumpInflater::supports(int vmaj, int vmin) { return vmaj == 1 && vmin >= 12 && vmin <= 14; }

std::optional<DumpHeader> read_dump_header(io::Source& in) {
  Reader r(in);
  auto h = parse_header_start(r);
  if (!h) return std::nullopt;
  if (DumpInflater::supports(h->h.vmaj, h->h.vmin)) {
    h->h.compression = static_cast<int>(r.integer(h->int_size));
  }
  return h->h;
}

namespace {

// After the version bytes: the compression (read, and written as 0: the output's data is
// uncompressed), the creation time, database name, server and pg_dump versions. Returns whether
// the input's data is compressed.
bool copy_header_rest(Reader& r, Writer& w, int isz) {
  w.raw(r.take_copied());
  r.set_copy(false);
  const bool compressed = r.integer(isz) != 0;
  w.integer(0);
  r.set_copy(true);
  for (int i = 0; i < 7; ++i) r.integer(isz);  // creation time
  for (int i = 0; i < 3; ++i) r.string(isz);   // database name, server and pg_dump versions
  w.raw(r.take_copied());
  return compressed;
}

// The table of contents, copied as is except the data offsets: they point into the compressed
// file, so they are marked unknown (pg_restore reading a stream does not use them anyway).
void copy_toc(Reader& r, Writer& w, const Header& header, std::vector<DumpTocEntry>& toc,
              std::map<int, DumpTableData>& tables) {
  const int isz = header.int_size;
  const std::int64_t count = r.integer(isz);
  if (count < 0 || count > 100000000) throw malformed("implausible TOC size");
  for (std::int64_t i = 0; i < count; ++i) {
    const int dump_id = static_cast<int>(r.integer(isz));
    r.integer(isz);  // hadDumper
    r.string(isz);   // tableoid
    r.string(isz);   // oid
    auto tag = r.string(isz);
    auto desc = r.string(isz);
    r.integer(isz);  // section
    auto defn = r.string(isz);
    r.string(isz);   // dropStmt
    auto copy_stmt = r.string(isz);
    auto ns = r.string(isz);
    r.string(isz);  // tablespace
    if (header.h.vmin >= 14) r.string(isz);  // tableam
    r.string(isz);                           // owner
    r.string(isz);                           // withOids
    while (r.string(isz)) {                  // dependencies, ended by NULL
    }
    w.raw(r.take_copied());
    r.set_copy(false);
    int flag = r.byte();
    std::vector<char> offset(static_cast<std::size_t>(header.off_size));
    r.exact(offset.data(), offset.size());
    r.set_copy(true);
    char out_flag = static_cast<char>(flag == kOffsetPosSet ? kOffsetPosNotSet : flag);
    w.raw(std::string_view(&out_flag, 1));
    w.raw(std::string(offset.size(), '\0'));
    toc.push_back({dump_id, desc.value_or(""), tag.value_or(""), ns.value_or(""), defn.value_or(""),
                   copy_stmt.value_or("")});
    // Rows are lines only in COPY data (not in --inserts dumps).
    if (toc.back().is_copy_data()) tables[dump_id] = {ns.value_or(""), tag.value_or(""), 0};
  }
  w.raw(r.take_copied());
  r.set_copy(false);
}

// A reader of the output that stopped (a pg_restore that failed and closed its stdin) ends the
// run at once: reading on would only wait for the rest of the input (a download) to discard it.
struct OutputClosed {};

// The data blocks: each one's chunks, uncompressed, to the output or to the tap, its COPY lines
// counted on the way.
class BlockCopier {
 public:
  BlockCopier(Reader& r, Writer& w, int isz, bool compressed, io::Sink& out, const DumpInflater::Tap* tap)
      : m_r(r), m_w(w), m_isz(isz), m_compressed(compressed), m_out(out), m_tap(tap), m_buf(kOutChunk) {}

  void check_output(const DumpTocEntry* tap_entry) {
    if (!tap_entry && !m_out.wants_more()) throw OutputClosed{};
  }

  // One data block: `table` counts its rows (nullptr: not COPY data); `tap_entry` takes its bytes
  // (nullptr: the output does).
  void block(DumpTableData* table, const DumpTocEntry* tap_entry) {
    Block b{table, tap_entry};
    for (;;) {
      std::int64_t len = m_r.integer(m_isz);
      if (len == 0) break;
      if (len < 0 || len > (1 << 30)) throw malformed("a data chunk of " + std::to_string(len) + " bytes");
      // Read in pieces of at most kInChunk (inflate streams), so a damaged length fails at the
      // end of the input instead of allocating it first.
      for (std::size_t left = static_cast<std::size_t>(len); left > 0;) {
        std::size_t n = std::min<std::size_t>(left, kInChunk);
        m_in.resize(n);
        m_r.exact(m_in.data(), n);
        piece(b, m_in.data(), n);
        left -= n;
        check_output(tap_entry);
      }
    }
    if (b.z && !b.ended) throw malformed("a compressed data block ends early");
    // pg_dump ends COPY data with "\\.\n\n\n": three lines that are not rows.
    if (table && b.tail.ends_with("\\.\n\n\n")) table->rows -= 3;
    if (tap_entry) {
      m_tap->end(*tap_entry);
    } else {
      m_w.integer(0);
    }
  }

 private:
  struct Block {
    DumpTableData* table;
    const DumpTocEntry* tap_entry;
    std::unique_ptr<inflate_state> z;  // created at the first compressed chunk
    bool ended = false;
    std::string tail;  // the last bytes, to recognise pg_dump's end-of-COPY marker
  };

  void emit(Block& b, const char* p, std::size_t n) {
    if (n == 0) return;
    if (b.tap_entry) {
      m_tap->data(*b.tap_entry, p, n);
    } else {
      m_w.chunk(p, n);
    }
  }

  static void count_rows(Block& b, const char* p, std::size_t n) {
    if (!b.table || n == 0) return;
    // memchr is the libc's vectorised search; std::count is a byte loop at -O2 (it was a fifth
    // of a restore's CPU in backupctl).
    for (const char *q = p, *end = p + n; (q = static_cast<const char*>(std::memchr(q, '\n', end - q))); ++q) {
      ++b.table->rows;
    }
    b.tail.append(p + (n > 8 ? n - 8 : 0), std::min<std::size_t>(n, 8));
    if (b.tail.size() > 8) b.tail.erase(0, b.tail.size() - 8);
  }

  // One piece of a chunk: uncompressed, counted and passed on; compressed, inflated.
  void piece(Block& b, const char* p, std::size_t n) {
    if (!m_compressed) {
      count_rows(b, p, n);
      emit(b, p, n);
      return;
    }
    if (!b.z) b.z = new_zlib_inflate();
    if (b.ended) throw malformed("data after the end of a compressed stream");
    inflate_state* z = b.z.get();
    z->next_in = reinterpret_cast<std::uint8_t*>(const_cast<char*>(p));
    z->avail_in = static_cast<std::uint32_t>(n);
    // isal_inflate returns when the input is used up or the output is full (then it may hold
    // more: call again until it has room left over).
    do {
      const std::uint32_t in_before = z->avail_in;
      z->next_out = reinterpret_cast<std::uint8_t*>(m_buf.data());
      z->avail_out = static_cast<std::uint32_t>(m_buf.size());
      int rc = isal_inflate(z);
      if (rc != ISAL_DECOMP_OK) {
        throw malformed("corrupt compressed data (" +
                        std::string(rc == ISAL_INCORRECT_CHECKSUM ? "incorrect data check"
                                    : rc == ISAL_INVALID_WRAPPER  ? "incorrect header"
                                                                  : "invalid deflate data") +
                        ")");
      }
      std::size_t produced = m_buf.size() - z->avail_out;
      count_rows(b, m_buf.data(), produced);
      emit(b, m_buf.data(), produced);
      if (z->block_state == ISAL_BLOCK_FINISH) {
        b.ended = true;
      } else if (produced == 0 && z->avail_in == in_before && z->avail_in > 0) {
        throw malformed("corrupt compressed data (no progress)");
      }
    } while (!b.ended && (z->avail_in > 0 || z->avail_out == 0));
  }

  Reader& m_r;
  Writer& m_w;
  const int m_isz;
  const bool m_compressed;
  io::Sink& m_out;
  const DumpInflater::Tap* m_tap;
  std::vector<char> m_in;   // a piece of the input
  std::vector<char> m_buf;  // inflated bytes
};

}  // namespace

void DumpInflater::run(io::Source& in) {
  Reader r(in);
  r.set_copy(true);
  auto header = parse_header_start(r);
  if (!header) throw malformed("no PGDMP header (not a custom-format archive)");
  if (!supports(header->h.vmaj, header->h.vmin)) {
    throw Error(ErrorCode::usage,
                "archive version " + std::to_string(header->h.vmaj) + "." +
                    std::to_string(header->h.vmin) + " is not supported by the streaming restore");
  }
  const int isz = header->int_size;
  Writer w(m_out, isz);
  const bool compressed = copy_header_rest(r, w, isz);
  copy_toc(r, w, *header, m_toc, m_tables);
  if (m_tap && m_tap->toc_done) m_tap->toc_done(m_toc);
  std::map<int, const DumpTocEntry*> tapped;
  if (m_tap) {
    for (const auto& e : m_toc) {
      if (m_tap->wants(e)) tapped[e.dump_id] = &e;
    }
  }
  BlockCopier blocks(r, w, isz, compressed, m_out, m_tap ? &*m_tap : nullptr);
  try {
    for (;;) {
      blocks.check_output(nullptr);
      int type = r.byte_or_eof();
      if (type < 0) break;
      int id = static_cast<int>(r.integer(isz));
      auto tap = type == kBlkData ? tapped.find(id) : tapped.end();
      if (tap == tapped.end()) {
        char t = static_cast<char>(type);
        w.raw(std::string_view(&t, 1));
        w.integer(id);
      }
      if (type == kBlkData) {
        auto it = m_tables.find(id);
        blocks.block(it == m_tables.end() ? nullptr : &it->second, tap == tapped.end() ? nullptr : tap->second);
      } else if (type == kBlkBlobs) {
        for (;;) {
          std::int64_t oid = r.integer(isz);
          w.integer(oid);
          if (oid == 0) break;
          blocks.block(nullptr, nullptr);
        }
      } else {
        throw malformed("unknown data block type " + std::to_string(type));
      }
    }
  } catch (const OutputClosed&) {
    return;  // the reader's own error says what went wrong
  }
  m_out.finish();
}

}  // namespace backupctl
