# The CUDA kernels (src/cuda), their op-by-op harness against the CPU kernels (tests/cuda) and
# their benchmark (bench/cuda), for CRUCIBLE_CUDA. CRUCIBLE_CPU_REFERENCE names the library that
# holds the CPU kernels: crucible_lib, or crucible_kernels alone (CRUCIBLE_CUDA_KERNELS_ONLY).
# 90: H100/H200 (sm_90); a list such as "80;90" builds for several.
set(CRUCIBLE_CUDA_ARCH "90" CACHE STRING "CUDA architectures for CRUCIBLE_CUDA")
include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  message(FATAL_ERROR "CRUCIBLE_CUDA=ON but nvcc was not found: put it on PATH or set "
                      "CMAKE_CUDA_COMPILER (e.g. /usr/local/cuda/bin/nvcc)")
endif()
set(CMAKE_CUDA_ARCHITECTURES ${CRUCIBLE_CUDA_ARCH})
enable_language(CUDA)
# CMake 3.25 (Debian 12) predates nvcc's C++20 flag: name it, for CMAKE_CXX_STANDARD's 20.
set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
find_package(CUDAToolkit REQUIRED)

file(GLOB CRUCIBLE_CUDA_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/cuda/*.cu)
add_library(crucible_cuda STATIC ${CRUCIBLE_CUDA_SOURCES})
target_include_directories(crucible_cuda PUBLIC ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(crucible_cuda PUBLIC CUDA::cudart CUDA::cublas)
# Warnings are errors here too. --fmad=false: a*b + c rounds twice, as written; the CPU's
# compiler fuses some such pairs (tolerances.h says which ops that makes inexact).
target_compile_options(crucible_cuda PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:--fmad=false --Werror=all-warnings -Xcompiler=-Wall,-Wextra,-Werror>)

# Every GPU op against its CPU kernel; each test skips itself without a GPU.
if(NOT TARGET GTest::gtest)
  find_package(GTest REQUIRED)
  include(GoogleTest)
endif()
file(GLOB CRUCIBLE_CUDA_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/cuda/*_test.cpp)
add_executable(crucible_cuda_tests ${CRUCIBLE_CUDA_TESTS})
target_link_libraries(crucible_cuda_tests PRIVATE crucible_cuda ${CRUCIBLE_CPU_REFERENCE}
                                                  GTest::gtest GTest::gtest_main)
gtest_discover_tests(crucible_cuda_tests DISCOVERY_TIMEOUT 60 TEST_PREFIX "cuda:")

# Throughput of the GPU kernels against the device's bounds (scripts/device_check.sh).
add_executable(crucible_cuda_bench ${CMAKE_SOURCE_DIR}/bench/cuda/cuda_bench.cpp)
target_link_libraries(crucible_cuda_bench PRIVATE crucible_cuda ${CRUCIBLE_CPU_REFERENCE})
