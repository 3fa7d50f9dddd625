#!/usr/bin/env bash
# Fails when a tracked C++ file of the project differs from what clang-format makes of it (the
# style is .clang-format at the root). CTest runs it as `format_check`; `--self-test` proves
# that the check fails on a badly formatted file (CTest: `format_check_self_test`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [[ "${1:-}" == "--self-test" ]]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  cp .clang-format "$tmp/"
  printf 'int  main( ) {return 0 ;}\n' > "$tmp/bad.cpp"
  if clang-format --dry-run --Werror "$tmp/bad.cpp" 2>/dev/null; then
    echo "format check self-test: a badly formatted file passed" >&2
    exit 1
  fi
  echo "format check self-test: a badly formatted file is caught"
  exit 0
fi
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files 'src/*.cpp' 'src/*.h' 'src/*.cu' 'src/*.cuh' 'tests/*.cpp' 'tests/*.h' \
                                    'bench/*.cpp' 'bench/*.h')
else
  mapfile -t files < <(find src tests -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh')
fi
clang-format --dry-run --Werror "${files[@]}"
echo "format check: ${#files[@]} files as clang-format writes them"
