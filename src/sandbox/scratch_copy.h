// Moving a scratch directory's contents into a sandbox and back. The sandbox's scratch is a
// tmpfs of its own (size- and inode-limited, nosuid, nodev); the caller's directory is never
// shown to sandboxed code. Its contents are copied in before the command starts and what the
// command left is copied back after every process of the sandbox is gone, so nothing races
// with the copy.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>

namespace crucible {

// Copies everything under `from` into the existing directory `to`: directories, regular files
// and symbolic links (as links, never followed), with their permission bits. When `as_user`
// is set (crucible runs as root), every new entry is created by (uid, gid), the sandbox's user
// on the host, so that it is the command's; the sources are still read as the caller. Other
// kinds of file are skipped. Throws Error naming the entry (e.g. when the tmpfs is full).
void copy_into_sandbox(const std::filesystem::path& from, const std::filesystem::path& to,
                       bool as_user, uid_t uid, gid_t gid);

// Replaces the contents of `to` with the directories and regular files under `from`, owned by
// the caller, with the set-user-ID, set-group-ID and sticky bits dropped (what a sandbox made
// must not gain privileges on the host). Symbolic links, devices, FIFOs and sockets are not
// copied back: their number is returned. Throws Error naming the entry on failure, and when
// the files' apparent sizes add up to more than `max_bytes` (a sparse file costs a tmpfs
// nothing but would be written out in full).
int64_t copy_out_of_sandbox(const std::filesystem::path& from, const std::filesystem::path& to,
                            uint64_t max_bytes);

}  // namespace crucible
