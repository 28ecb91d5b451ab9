// Staged files: the transaction participant that writes a file aside, makes it durable on
// prepare and moves it into place on commit.
//
// Crash behaviour, for the journal that records a StagedFile between stage and publish:
//   after Stage      a staged file (maybe partial, not fsynced) sits in the staging dir; abort
//                    or recovery discards it
//   after Prepare    the staged file and its directory entry are durable
//   during Publish   the rename is atomic: the target holds either its old content or the
//                    staged content, never a mix; a retried Publish finds the staged file gone
//                    and the target of the staged size, and succeeds
//   cross-device     the content is copied into a temp file beside the target, fsynced and
//                    renamed over it; a crash leaves at worst that temp file, and the staged
//                    file stays until the rename is done, so a retry starts over
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "value/value.h"

namespace atomflow::connectors {

// A file written aside, waiting to be published at target_path or discarded.
struct StagedFile {
  std::string staged_path;
  std::string target_path;
  uint64_t size = 0;

  // {staged_path, target_path, size}: how the journal records it.
  Value ToValue() const;
  static Result<StagedFile> FromValue(const Value& value);
};

// The operations on staged files. Stateless: every call works from the StagedFile alone, so a
// recovering process can finish what a crashed one began. Thread safe for distinct files.
class StagedFiles {
 public:
  // Writes content (or copies source_path) into staging_dir, created if missing, under a name
  // no other stage uses.
  static Result<StagedFile> Stage(const std::string& staging_dir, const std::string& target_path,
                                  std::string_view content);
  static Result<StagedFile> StageCopy(const std::string& staging_dir,
                                      const std::string& target_path,
                                      const std::string& source_path);

  // Makes the staged file and its directory entry durable (fsync): the prepare of 2PC. Fails
  // first when the target could never be published (a directory, or below a regular file or
  // an unwritable folder), so that such a branch aborts its transaction.
  [[nodiscard]] static Status Prepare(const StagedFile& file);

  // Moves the staged file to its target atomically, creating parent directories, and makes
  // the rename durable. Idempotent: safe to retry after a crash.
  [[nodiscard]] static Status Publish(const StagedFile& file);

  // Removes the staged file; succeeds when it is already gone.
  [[nodiscard]] static Status Discard(const StagedFile& file);
};

}  // namespace atomflow::connectors
