// The fixture the store tests share: a fresh folder for the store's file, removed afterwards.
#pragma once

#include <gtest/gtest.h>
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

  std::string dir_;
  std::string path_;
};

}  // namespace atomflow::store
