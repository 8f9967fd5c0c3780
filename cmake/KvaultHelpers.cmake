# Helpers that register every kvault library, test and benchmark the same way [leveldb
# leveldb_test()].

set(KVAULT_WARNINGS -Wall -Wextra -Wno-missing-field-initializers)
if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  list(APPEND KVAULT_WARNINGS -Wthread-safety)
endif()
if(KVAULT_WERROR)
  list(APPEND KVAULT_WARNINGS -Werror)
endif()

set(KVAULT_SANITIZER_FLAGS "")
if(KVAULT_SANITIZE AND KVAULT_TSAN)
  message(FATAL_ERROR "KVAULT_SANITIZE (ASan) and KVAULT_TSAN cannot be combined")
elseif(KVAULT_SANITIZE)
  set(KVAULT_SANITIZER_FLAGS -fsanitize=address,undefined -fno-omit-frame-pointer
                             -fno-sanitize-recover=undefined)
elseif(KVAULT_TSAN)
  set(KVAULT_SANITIZER_FLAGS -fsanitize=thread -fno-omit-frame-pointer)
elseif(KVAULT_FUZZ)
  set(KVAULT_SANITIZER_FLAGS -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer)
endif()

# Compile options shared by every kvault target.
function(kvault_target_defaults target)
  target_compile_options(${target} PRIVATE ${KVAULT_WARNINGS} ${KVAULT_SANITIZER_FLAGS})
  target_link_options(${target} PRIVATE ${KVAULT_SANITIZER_FLAGS})
  target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR}/src
                                              ${CMAKE_BINARY_DIR}/generated)
endfunction()

# kvault_library(<module> SOURCES ... DEPS ...): the static library kvault_<module>.
function(kvault_library module)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(kvault_${module} STATIC ${ARG_SOURCES})
  kvault_target_defaults(kvault_${module})
  target_link_libraries(kvault_${module} PUBLIC ${ARG_DEPS})
endfunction()

# kvault_test(<name> SOURCES ... DEPS ... [LABELS ...] [FIXTURES ...]): a GoogleTest binary
# registered with CTest. Tests labelled "model" need the generated tiny model (fixture
# tiny_model) and get its path in KVAULT_TEST_MODEL.
function(kvault_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;DEPS;LABELS;FIXTURES" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  kvault_target_defaults(${name})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR})
  add_test(NAME ${name} COMMAND ${name} --gtest_color=no)
  if(NOT ARG_LABELS)
    set(ARG_LABELS unit)
  endif()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT}
    ENVIRONMENT "KVAULT_TEST_MODEL=${KVAULT_TEST_MODEL};KVAULT_BIN=$<TARGET_FILE:kvault>")
  if(ARG_FIXTURES)
    set_tests_properties(${name} PROPERTIES FIXTURES_REQUIRED "${ARG_FIXTURES}")
  endif()
endfunction()

# kvault_bench(<name> SOURCES ... DEPS ...): a Google Benchmark binary in bench/.
function(kvault_bench name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  kvault_target_defaults(${name})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} benchmark::benchmark)
endfunction()
