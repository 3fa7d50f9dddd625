// Linked into the executables of a sanitizer build (CRUCIBLE_SANITIZE) only: the sanitizers'
// settings, compiled in so that `ctest` needs no environment variables.
//
// LeakSanitizer's suppressions: libcln (GiNaC's number library, Debian 12) allocates 26 bytes in
// a static initialiser and never frees them; without this every sanitized binary exits
// non-zero, test discovery included. Open MPI 4.1 (a rank under mpirun) leaves allocations of its
// own behind at MPI_Finalize, made from its libraries and their dlopen'ed components (which are
// unloaded by then: the tests' ranks unwind fully, ASAN_OPTIONS=fast_unwind_on_malloc=0, so the
// stacks reach the libraries named here, or its progress thread's event loop, libevent). Nothing of
// ours is suppressed.
extern "C" const char* __lsan_default_suppressions() {
    return "leak:libcln.so\n"
           "leak:libmpi.so\n"
           "leak:libopen-pal.so\n"
           "leak:libopen-rte.so\n"
           "leak:libpmix.so\n"
           "leak:libevent_core\n";  // Open MPI's progress thread
}

// print_suppressions=0: the suppression report would otherwise end the stderr of every
// process, and tests compare a command's stderr with its one error line.
extern "C" const char* __lsan_default_options() {
    return "print_suppressions=0";
}

// allocator_may_return_null=1: an allocation too large to make fails as it does without the
// sanitizer (malloc returns null, operator new throws std::bad_alloc) instead of aborting the
// process. The math verifier relies on it: CLN asks for an impossible bignum on hostile input
// such as e^{e^{e^{10}}} and the verifier reports the failure as "not equal"
// (EvalVerifiers.HostileInputsFailQuietly).
extern "C" const char* __asan_default_options() {
    return "allocator_may_return_null=1";
}
