// Moving a scratch directory's contents into a sandbox and back. The sandbox's scratch is a
// tmpfs of its own (size- and inode-limited, nosuid, nodev); the caller's directory is never
// shown to sandboxed code. Its contents are copied in before the command starts and what the
// command left is copied back after every process of the sandbox is gone, so nothing inside
// races with the copy. Nothing outside may either: check_scratch_is_private() refuses a
// directory that another user could change while crucible (perhaps root) copies it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>

namespace crucible {

// Throws Error naming the entry unless `dir`, every directory under it and every ancestor
// belong to the caller (ancestors: or root) and are not writable by others (ancestors: unless
// sticky, like /tmp). Otherwise another user could swap an entry for a symbolic link or FIFO
// during the copy and make crucible read or write through it. Group write is allowed (the
// user-private-group habit, umask 002): a group's members are trusted with the directory.
void check_scratch_is_private(const std::filesystem::path& dir);

// Copies everything under `from` into the existing directory `to`: directories, regular files
// and symbolic links (as links, never followed), with their permission bits (directories' once
// their contents are in). When `as_user` is set (crucible runs as root), every new entry is
// created by (uid, gid), the sandbox's user on the host, so that it is the command's; the
// sources are still read as the caller. Other kinds of file are skipped. Throws Error naming
// the entry (e.g. when the tmpfs is full).
void copy_into_sandbox(const std::filesystem::path& from, const std::filesystem::path& to,
                       bool as_user, uid_t uid, gid_t gid);

// Replaces the contents of `to` with the directories and regular files under `from`, owned by
// the caller, with the set-user-ID, set-group-ID and sticky bits and group/other write
// permission dropped (what a sandbox made must not gain privileges on the host or open it to
// other users). Symbolic links, devices, FIFOs and sockets are not copied back; their number
// goes to `skipped`. `from` is measured first: when its files' apparent sizes add up to more
// than `max_bytes` (a sparse file costs a tmpfs nothing but would be written out in full), it
// is deeper than `max_depth`, or something in it cannot be read, `to` is left as it was.
// Returns "" on success, else why not (never throws: the command's result stands).
std::string copy_out_of_sandbox(const std::filesystem::path& from, const std::filesystem::path& to,
                                uint64_t max_bytes, int max_depth, int64_t* skipped);

}  // namespace crucible
