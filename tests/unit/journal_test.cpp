// catalog/journal: an entry is on disk before the change it covers; a run that ends settles or
// undoes every entry and leaves no file; an undo that fails stays for the repair; the repair's
// reader acts on no file it cannot trust.
#include "catalog/journal.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "util/error.hpp"

namespace backupctl {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

class JournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "journal-test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir = tmpl;
  }
  void TearDown() override { fs::remove_all(dir); }

  json on_disk(const Journal& j) { return json::parse(std::ifstream(j.path())); }

  fs::path dir;
  std::vector<std::string> undone;  // "type:data" of each undo, in order
  Journal::Undo undo = [this](const std::string& type, const json& data) { undone.push_back(type + ":" + data.dump()); };
};

}  // namespace

TEST_F(JournalTest, AnEntryIsOnDiskBeforeItsChangeAndGoneWhenSettled) {
  fs::path file;
  {
    Journal j(dir, "restore db", undo);
    file = j.path();
    j.step("restore-db.loaded");
    Journal::Entry e = j.add("side_database", {{"name", "archive__restore_1"}});
    json seen = on_disk(j);
    EXPECT_EQ(seen["command"], "restore db");
    EXPECT_EQ(seen["step"], "restore-db.loaded");
    ASSERT_EQ(seen["pending"].size(), 1u);
    EXPECT_EQ(seen["pending"][0]["type"], "side_database");
    EXPECT_EQ(seen["pending"][0]["data"]["name"], "archive__restore_1");
    e.update({{"name", "archive__restore_1"}, {"connections", false}});
    EXPECT_EQ(on_disk(j)["pending"][0]["data"]["connections"], false);
    e.settle();
    EXPECT_TRUE(on_disk(j)["pending"].empty());
    EXPECT_TRUE(undone.empty()) << "a settled entry was undone";
    EXPECT_EQ((fs::status(file).permissions() & fs::perms::all), fs::perms::owner_read | fs::perms::owner_write);
  }
  EXPECT_FALSE(fs::exists(file)) << "a run that settled everything left its journal";
}

TEST_F(JournalTest, AnEntryLeftUnsettledIsUndoneOnTheSpotNewestFirst) {
  fs::path file;
  {
    Journal j(dir, "rehearse", undo);
    file = j.path();
    Journal::Entry a = j.add("temp_path", {{"path", "/tmp/a"}});
    Journal::Entry b = j.add("services", {{"stopped", true}});
  }  // b, then a, go out of scope unsettled
  EXPECT_EQ(undone, (std::vector<std::string>{R"(services:{"stopped":true})", R"(temp_path:{"path":"/tmp/a"})"}));
  EXPECT_FALSE(fs::exists(file));
}

TEST_F(JournalTest, AnUndoThatFailsStaysInTheJournalWithItsErrorForTheRepair) {
  Journal::Undo failing = [](const std::string&, const json&) { throw std::runtime_error("the server is gone"); };
  fs::path file;
  {
    Journal j(dir, "restore db", failing);
    file = j.path();
    Journal::Entry e = j.add("swap", {{"live", "archive"}});
    EXPECT_THROW(e.undo(), std::runtime_error);
  }
  ASSERT_TRUE(fs::exists(file)) << "the journal of an undo that failed is gone: the repair cannot finish it";
  std::vector<JournalFile> found = read_journals(dir);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].problem, "");
  ASSERT_EQ(found[0].json["pending"].size(), 1u);
  EXPECT_EQ(found[0].json["pending"][0]["undo_error"], "the server is gone");
  EXPECT_TRUE(found[0].json.contains("ended_at"));
}

TEST_F(JournalTest, TheRepairReadsNoJournalItCannotTrust) {
  fs::create_directory(dir / "journal");
  std::ofstream(dir / "journal/run_20261206_010000_1.json") << "{ not json";
  std::ofstream(dir / "journal/run_20261206_010000_2.json") << R"({"pending": "not a list"})";
  std::ofstream(dir / "journal/run_20261206_010000_3.json") << R"({"pending": []})";
  ::chmod((dir / "journal/run_20261206_010000_3.json").c_str(), 0666);
  std::ofstream(dir / "journal/notes.txt") << "not a journal name";
  std::vector<JournalFile> found = read_journals(dir);
  ASSERT_EQ(found.size(), 3u);
  EXPECT_NE(found[0].problem.find("unreadable"), std::string::npos) << found[0].problem;
  EXPECT_EQ(found[1].problem, "not a backupctl journal");
  EXPECT_EQ(found[2].problem, "writable by others: not acted on");
}

// A run killed (SIGKILL) while it rewrote its journal leaves run_<ts>_<pid>.json.tmp.<pid>; the
// repair, under the lock, removes it and nothing else.
TEST_F(JournalTest, AHalfWrittenJournalOfAKilledRunIsFoundAndRemoved) {
  fs::create_directory(dir / "journal");
  std::ofstream(dir / "journal/run_20261206_010000_7.json.tmp.7") << R"({"pending": [)";
  std::ofstream(dir / "journal/run_20261206_010000_8.json") << R"({"pending": []})";
  std::ofstream(dir / "journal/notes.txt.tmp.9") << "not a journal name";
  fs::create_directory(dir / "journal/run_20261206_010000_9.json.tmp.9");  // not a file: left alone
  EXPECT_EQ(journal_leftovers(dir), std::vector<fs::path>{dir / "journal/run_20261206_010000_7.json.tmp.7"});
  remove_journal_leftovers(dir);
  EXPECT_FALSE(fs::exists(dir / "journal/run_20261206_010000_7.json.tmp.7"));
  EXPECT_TRUE(fs::exists(dir / "journal/run_20261206_010000_8.json"));
  EXPECT_TRUE(fs::exists(dir / "journal/notes.txt.tmp.9"));
  EXPECT_TRUE(fs::is_directory(dir / "journal/run_20261206_010000_9.json.tmp.9"));
  EXPECT_EQ(read_journals(dir).size(), 1u) << "the half-written copy is not a journal";
}

TEST_F(JournalTest, AJournalFolderThatIsALinkIsRefused) {
  fs::create_directory(dir / "elsewhere");
  fs::create_directory_symlink(dir / "elsewhere", dir / "journal");
  try {
    Journal j(dir, "prune", undo);
    FAIL() << "a journal was written through a link: " << j.path();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::usage);
    EXPECT_NE(std::string(e.what()).find("is a symbolic link"), std::string::npos) << e.what();
  }
  EXPECT_THROW(read_journals(dir), Error);
  EXPECT_TRUE(fs::is_empty(dir / "elsewhere"));
}

}  // namespace backupctl
