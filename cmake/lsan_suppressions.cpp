// Linked into the executables of a sanitizer build (CRUCIBLE_SANITIZE) only. LeakSanitizer
// reads these suppressions at exit.
//
// libcln (GiNaC's number library, Debian 12) allocates 26 bytes in a static initialiser and
// never frees them; without this every sanitized binary exits non-zero, test discovery
// included. Nothing of ours is suppressed.
extern "C" const char* __lsan_default_suppressions() {
    return "leak:libcln.so\n";
}
