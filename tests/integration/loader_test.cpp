// ParallelCopyLoader against a real server: the per-table "loaded" report that lets a restore
// analyze a table while later tables still load.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "fixture.hpp"
#include "pg/connection.hpp"
#include "pg/parallel_load.hpp"

using namespace backupctl;
using backupctl::test::PgCluster;

namespace {

// Hands `text` to the loader in 64 KiB pieces, then pg_dump's end-of-data marker and the end.
void feed(ParallelCopyLoader& loader, const DumpTocEntry& e, const std::string& text) {
  const std::string data = text + "\\.\n\n\n";
  for (std::size_t at = 0; at < data.size(); at += 65536) {
    loader.data(e, data.data() + at, std::min<std::size_t>(65536, data.size() - at));
  }
  loader.end(e);
}

}  // namespace

TEST(ParallelCopyLoader, ReportsEachTableOnceWhenAllOfItsRowsAreCommitted) {
  PgCluster pg;
  pg.create_database("load");
  pg.psql("load", "CREATE TABLE public.a (x int); CREATE TABLE public.b (x text); CREATE TABLE public.e (x int)");
  const PgTarget db = PgTarget::from_url("host=" + pg.socket_dir().string() + " port=5432 user=postgres dbname=load");
  const std::vector<DumpTocEntry> toc = {
      {1, "TABLE DATA", "a", "public", "", "COPY public.a (x) FROM stdin;\n"},
      {2, "TABLE DATA", "e", "public", "", "COPY public.e (x) FROM stdin;\n"},
      {3, "TABLE DATA", "b", "public", "", "COPY public.b (x) FROM stdin;\n"},
  };
  // a: 7.9 MB (two batches, one per connection), e: no rows, b: 20 MB (five batches).
  std::string a, b;
  for (int i = 0; i < 1000000; ++i) a += std::to_string(1000000 + i) + "\n";
  for (int i = 0; i < 200000; ++i) b += std::string(99, static_cast<char>('a' + i % 26)) + "\n";

  std::mutex mutex;
  std::vector<std::pair<std::string, std::string>> reported;  // table, rows a reader saw then
  ParallelCopyLoader loader(db, 2, "SET synchronous_commit = off;");
  loader.on_loaded([&](const DumpTocEntry& e) {
    // Another session sees every row of the table the moment it is reported.
    PgConnection reader = PgConnection::open(db);
    std::string rows = reader.scalar("SELECT count(*) FROM public." + e.tag);
    std::lock_guard<std::mutex> lock(mutex);
    reported.emplace_back(e.tag, rows);
  });
  feed(loader, toc[0], a);
  feed(loader, toc[1], "");
  feed(loader, toc[2], b);
  std::map<int, std::int64_t> rows = loader.finish();

  EXPECT_EQ(rows[1], 1000000);
  EXPECT_EQ(rows[3], 200000);
  std::sort(reported.begin(), reported.end());
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"a", "1000000"}, {"b", "200000"}, {"e", "0"}};
  EXPECT_EQ(reported, expected);
}
