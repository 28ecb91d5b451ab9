// Staged files: write aside, fsync on prepare, atomic rename on publish, unlink on discard.
#include "connectors/staged_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>

namespace atomflow::connectors {
namespace {

namespace fs = std::filesystem;

Status ErrnoError(const std::string& what, const std::string& path) {
  return Status::Error(what + " " + path + ": " + strerror(errno));
}

// A name part no other stage in any process uses: pid, a per-process counter and a random
// word (the pid alone repeats across restarts).
std::string UniqueSuffix() {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t random_word = std::random_device{}();
  return std::to_string(getpid()) + "-" + std::to_string(counter++) + "-" +
         std::to_string(random_word);
}

Status SyncDirectory(const std::string& dir) {
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("cannot open directory", dir);
  int synced = fsync(fd);
  close(fd);
  if (synced != 0) return ErrnoError("cannot fsync directory", dir);
  return Status::Ok();
}

std::string ParentOf(const std::string& path) {
  std::string parent = fs::path(path).parent_path().string();
  return parent.empty() ? "." : parent;
}

Status WriteAll(int fd, const char* bytes, size_t size, const std::string& path) {
  while (size > 0) {
    ssize_t written = write(fd, bytes, size);
    if (written < 0 && errno == EINTR) continue;
    if (written < 0) return ErrnoError("cannot write", path);
    bytes += written;
    size -= static_cast<size_t>(written);
  }
  return Status::Ok();
}

// Copies the file at source onto the open descriptor out; returns the bytes copied.
Result<uint64_t> CopyInto(const std::string& source, int out, const std::string& out_path) {
  int in = open(source.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return ErrnoError("cannot open", source);
  char buffer[64 << 10];
  uint64_t copied = 0;
  Status status = Status::Ok();
  while (status.ok()) {
    ssize_t size = read(in, buffer, sizeof(buffer));
    if (size < 0 && errno == EINTR) continue;
    if (size < 0) status = ErrnoError("cannot read", source);
    if (size <= 0) break;
    status = WriteAll(out, buffer, static_cast<size_t>(size), out_path);
    copied += static_cast<uint64_t>(size);
  }
  close(in);
  if (!status.ok()) return status;
  return copied;
}

// Creates a new file in staging_dir for target_path; the caller writes and closes it.
Result<int> CreateStagedFile(const std::string& staging_dir, const std::string& target_path,
                             std::string* staged_path) {
  std::error_code error;
  fs::create_directories(staging_dir, error);
  if (error) {
    return Status::Error("cannot create staging dir " + staging_dir + ": " + error.message());
  }
  *staged_path = (fs::path(staging_dir) /
                  (fs::path(target_path).filename().string() + "." + UniqueSuffix() + ".staged"))
                     .string();
  int fd = open(staged_path->c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("cannot create staged file", *staged_path);
  return fd;
}

Status FsyncFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("cannot open", path);
  int synced = fsync(fd);
  close(fd);
  if (synced != 0) return ErrnoError("cannot fsync", path);
  return Status::Ok();
}

// The cross-device publish: a copy beside the target, fsynced, renamed over it; the staged
// file goes only once the target is in place.
Status PublishByCopy(const StagedFile& file) {
  std::string temp = file.target_path + ".atomflow-publish-" + UniqueSuffix();
  int out = open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (out < 0) return ErrnoError("cannot create", temp);
  Result<uint64_t> copied = CopyInto(file.staged_path, out, temp);
  int synced = copied.ok() ? fsync(out) : 0;
  close(out);

  if (!copied.ok() || synced != 0 || rename(temp.c_str(), file.target_path.c_str()) != 0) {
    Status failed = !copied.ok() ? copied.status() : ErrnoError("cannot publish", temp);
    unlink(temp.c_str());
    return failed;
  }
  Status durable = SyncDirectory(ParentOf(file.target_path));
  if (!durable.ok()) return durable;
  return StagedFiles::Discard(file);
}

// A publish retried after a crash finds the staged file gone: it succeeded when the target is
// there with the staged size.
Status CheckAlreadyPublished(const StagedFile& file) {
  struct stat target;
  if (stat(file.target_path.c_str(), &target) == 0 &&
      static_cast<uint64_t>(target.st_size) == file.size) {
    return Status::Ok();
  }
  return Status::Error("cannot publish " + file.target_path + ": the staged file " +
                       file.staged_path + " is gone and the target is missing or of another size");
}

// Why a file could not be published at target_path, found before the commit decision so that
// a target that can never be written aborts the transaction instead of failing phase two:
// the target must not be a directory, and the nearest existing ancestor of its folder must be
// a directory this process can create entries in (Publish creates the folders below it).
Status CheckPublishable(const std::string& target_path) {
  struct stat target;
  if (stat(target_path.c_str(), &target) == 0 && S_ISDIR(target.st_mode)) {
    return Status::Error("cannot publish to " + target_path + ": it is a directory");
  }

  fs::path ancestor = fs::path(ParentOf(target_path));
  struct stat found;
  while (stat(ancestor.c_str(), &found) != 0) {
    bool missing = errno == ENOENT || errno == ENOTDIR;
    if (!missing || ancestor.parent_path() == ancestor || ancestor.parent_path().empty()) {
      return ErrnoError("cannot publish to " + target_path + ": cannot look at", ancestor.string());
    }
    ancestor = ancestor.parent_path();
  }
  if (!S_ISDIR(found.st_mode)) {
    return Status::Error("cannot publish to " + target_path + ": " + ancestor.string() +
                         " is not a directory");
  }
  if (access(ancestor.c_str(), W_OK | X_OK) != 0) {
    return ErrnoError("cannot publish to " + target_path + ": cannot create entries in",
                      ancestor.string());
  }
  return Status::Ok();
}

}  // namespace

Value StagedFile::ToValue() const {
  return Value(Map{{"staged_path", Value(staged_path)},
                   {"target_path", Value(target_path)},
                   {"size", Value(static_cast<int64_t>(size))}});
}

Result<StagedFile> StagedFile::FromValue(const Value& value) {
  const Value* staged = value.is_map() ? value.AsMap().Find("staged_path") : nullptr;
  const Value* target = value.is_map() ? value.AsMap().Find("target_path") : nullptr;
  const Value* size = value.is_map() ? value.AsMap().Find("size") : nullptr;
  if (staged == nullptr || !staged->is_string() || target == nullptr || !target->is_string() ||
      size == nullptr || !size->is_int() || size->AsInt() < 0) {
    return Status::Error("malformed staged file record: " + DebugString(value));
  }
  return StagedFile{staged->AsString(), target->AsString(), static_cast<uint64_t>(size->AsInt())};
}

Result<StagedFile> StagedFiles::Stage(const std::string& staging_dir,
                                      const std::string& target_path, std::string_view content) {
  StagedFile file{"", target_path, content.size()};
  Result<int> fd = CreateStagedFile(staging_dir, target_path, &file.staged_path);
  if (!fd.ok()) return fd.status();

  Status written = WriteAll(*fd, content.data(), content.size(), file.staged_path);
  close(*fd);
  if (!written.ok()) {
    unlink(file.staged_path.c_str());
    return written;
  }
  return file;
}

Result<StagedFile> StagedFiles::StageCopy(const std::string& staging_dir,
                                          const std::string& target_path,
                                          const std::string& source_path) {
  StagedFile file{"", target_path, 0};
  Result<int> fd = CreateStagedFile(staging_dir, target_path, &file.staged_path);
  if (!fd.ok()) return fd.status();

  Result<uint64_t> copied = CopyInto(source_path, *fd, file.staged_path);
  close(*fd);
  if (!copied.ok()) {
    unlink(file.staged_path.c_str());
    return copied.status();
  }
  file.size = *copied;
  return file;
}

Status StagedFiles::Prepare(const StagedFile& file) {
  Status publishable = CheckPublishable(file.target_path);
  if (!publishable.ok()) return publishable;

  Status synced = FsyncFile(file.staged_path);
  if (!synced.ok()) return synced;
  return SyncDirectory(ParentOf(file.staged_path));
}

Status StagedFiles::Publish(const StagedFile& file) {
  if (access(file.staged_path.c_str(), F_OK) != 0) {
    if (errno != ENOENT) return ErrnoError("cannot look at staged file", file.staged_path);
    return CheckAlreadyPublished(file);
  }

  Status publishable = CheckPublishable(file.target_path);
  if (!publishable.ok()) return publishable;
  std::error_code error;
  std::string parent = ParentOf(file.target_path);
  fs::create_directories(parent, error);
  if (error) return Status::Error("cannot create directory " + parent + ": " + error.message());

  if (rename(file.staged_path.c_str(), file.target_path.c_str()) == 0) {
    return SyncDirectory(parent);
  }
  if (errno == EXDEV) return PublishByCopy(file);
  return ErrnoError("cannot publish " + file.staged_path + " to", file.target_path);
}

Status StagedFiles::Discard(const StagedFile& file) {
  if (unlink(file.staged_path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoError("cannot discard staged file", file.staged_path);
  }
  return Status::Ok();
}

}  // namespace atomflow::connectors
