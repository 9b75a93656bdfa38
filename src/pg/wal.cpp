#include "pg/wal.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace backupctl {

namespace {

bool upper_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); });
}

std::uint64_t hex_value(std::string_view s) {
  std::uint64_t v = 0;
  for (char c : s) v = v * 16 + static_cast<std::uint64_t>(c <= '9' ? c - '0' : c - 'A' + 10);
  return v;
}

std::uint64_t segments_per_xlog_id(std::uint64_t segment_size) { return 0x100000000ull / segment_size; }

bool valid_segment_size(std::uint64_t size) {
  return size >= (1u << 20) && size <= (1u << 30) && (size & (size - 1)) == 0;
}

// Little-endian fields of the page header (PostgreSQL writes them in the host's order; the hosts
// backupctl runs on are little-endian).
template <class T>
T field(std::span<const char> data, std::size_t offset) {
  T v;
  std::memcpy(&v, data.data() + offset, sizeof v);
  return v;
}

constexpr std::size_t kLongHeaderSize = 40;
constexpr std::uint16_t kLongHeaderFlag = 0x0002;  // XLP_LONG_HEADER

}  // namespace

std::optional<Lsn> parse_lsn(std::string_view text) {
  auto slash = text.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash > 8 || text.size() - slash - 1 == 0 ||
      text.size() - slash - 1 > 8) {
    return std::nullopt;
  }
  std::string hi(text.substr(0, slash)), lo(text.substr(slash + 1));
  for (auto* s : {&hi, &lo}) {
    std::transform(s->begin(), s->end(), s->begin(), [](char c) { return static_cast<char>(std::toupper(c)); });
    if (!upper_hex(*s)) return std::nullopt;
  }
  return (hex_value(hi) << 32) | hex_value(lo);
}

std::string format_lsn(Lsn lsn) { return fmt::format("{:X}/{:X}", lsn >> 32, lsn & 0xFFFFFFFFu); }

std::string WalSegmentName::str(std::uint64_t segment_size) const {
  const std::uint64_t per_id = segments_per_xlog_id(segment_size);
  return fmt::format("{:08X}{:08X}{:08X}", timeline, segno / per_id, segno % per_id);
}

std::optional<WalSegmentName> parse_wal_segment_name(std::string_view name, std::uint64_t segment_size) {
  if (name.size() != 24 || !upper_hex(name) || !valid_segment_size(segment_size)) return std::nullopt;
  WalSegmentName out;
  out.timeline = static_cast<std::uint32_t>(hex_value(name.substr(0, 8)));
  const std::uint64_t hi = hex_value(name.substr(8, 8)), lo = hex_value(name.substr(16, 8));
  if (out.timeline == 0 || lo >= segments_per_xlog_id(segment_size)) return std::nullopt;
  out.segno = hi * segments_per_xlog_id(segment_size) + lo;
  return out;
}

std::optional<std::uint32_t> parse_history_name(std::string_view name) {
  if (name.size() != 16 || !name.ends_with(".history") || !upper_hex(name.substr(0, 8))) return std::nullopt;
  auto tli = static_cast<std::uint32_t>(hex_value(name.substr(0, 8)));
  if (tli == 0) return std::nullopt;
  return tli;
}

WalSegmentName segment_of(Lsn lsn, std::uint32_t timeline, std::uint64_t segment_size) {
  return {timeline, lsn / segment_size};
}

std::optional<WalSegmentHeader> read_wal_segment_header(std::span<const char> data) {
  if (data.size() < kLongHeaderSize) return std::nullopt;
  const auto magic = field<std::uint16_t>(data, 0);
  const auto info = field<std::uint16_t>(data, 2);
  if ((magic & 0xFF00) != 0xD000 && (magic & 0xFF00) != 0xD100) return std::nullopt;
  if ((info & kLongHeaderFlag) == 0) return std::nullopt;
  WalSegmentHeader h;
  h.timeline = field<std::uint32_t>(data, 4);
  h.page_address = field<std::uint64_t>(data, 8);
  h.system_identifier = field<std::uint64_t>(data, 24);
  h.segment_size = field<std::uint32_t>(data, 32);
  h.block_size = field<std::uint32_t>(data, 36);
  if (!valid_segment_size(h.segment_size) || h.block_size < 1024 || h.block_size > 65536 ||
      (h.block_size & (h.block_size - 1)) != 0) {
    return std::nullopt;
  }
  return h;
}

std::string check_wal_segment(std::string_view name, std::span<const char> data, std::uint64_t system_identifier,
                              bool partial) {
  return check_wal_segment_head(name, data, data.size(), system_identifier, partial);
}

std::string check_wal_segment_head(std::string_view name, std::span<const char> head, std::uint64_t size,
                                   std::uint64_t system_identifier, bool partial) {
  auto header = read_wal_segment_header(head);
  if (!header) return "its first page is not a WAL segment's";
  if (partial ? size > header->segment_size : size != header->segment_size) {
    return fmt::format("{} bytes, a segment of this cluster has {}", size, header->segment_size);
  }
  auto parsed = parse_wal_segment_name(name, header->segment_size);
  if (!parsed) return "not a WAL segment's name";
  if (system_identifier != 0 && header->system_identifier != system_identifier) {
    return fmt::format("it belongs to the cluster {}, not {}", header->system_identifier, system_identifier);
  }
  // The first segment of a new timeline starts as a copy of the old one's: its first page may
  // carry an earlier timeline, never a later one.
  if (header->timeline == 0 || header->timeline > parsed->timeline) {
    return fmt::format("its first page is of timeline {}, its name says {}", header->timeline, parsed->timeline);
  }
  if (header->page_address != parsed->start(header->segment_size)) {
    return fmt::format("its first page is at {}, its name says {}", format_lsn(header->page_address),
                       format_lsn(parsed->start(header->segment_size)));
  }
  return "";
}

}  // namespace backupctl
