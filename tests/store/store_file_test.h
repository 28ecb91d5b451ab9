// The fixture the store tests share: a fresh folder for the store's file, removed afterwards.
#pragma once

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <utility>

#include "store/store.h"

namespace atomflow::store {

// Each test gets its own folder (dir_) and store path (path_, not created until opened).
class StoreFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "/store_test_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    path_ = dir_ + "/atomflow.db";
  }

  void TearDown() override { std::filesystem::remove_all(dir_); }

  // The store at path_, or null with the failure reported.
  std::unique_ptr<Store> OpenStore() {
    Result<std::unique_ptr<Store>> store = OpenSqliteStore(path_);
    if (!store.ok()) {
      ADD_FAILURE() << store.message();
      return nullptr;
    }
    return std::move(store).value();
  }

  // Runs SQL on the store's file through a connection of its own, as another process would.
  void ExecOnFile(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    char* error = nullptr;
    int code = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
    std::string message = error != nullptr ? error : "";
    sqlite3_free(error);
    sqlite3_close(db);
    ASSERT_EQ(code, SQLITE_OK) << message;
  }

  std::string dir_;
  std::string path_;
};

}  // namespace atomflow::store
