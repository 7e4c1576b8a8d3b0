# Helpers for the command-line smoke tests run in script mode (cmake -P), included by
# cli_tests.cmake and memprofile_tests.cmake. FG is the binary, WORK the scratch directory.

# fg(<result prefix> args...): runs the binary in WORK; sets <prefix>_rc, _out, _err.
function(fg prefix)
  execute_process(COMMAND "${FG}" ${ARGN} WORKING_DIRECTORY "${WORK}"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(${prefix}_rc "${rc}" PARENT_SCOPE)
  set(${prefix}_out "${out}" PARENT_SCOPE)
  set(${prefix}_err "${err}" PARENT_SCOPE)
endfunction()
function(expect_ok prefix)
  if(NOT "${${prefix}_rc}" STREQUAL "0")
    message(FATAL_ERROR "expected success, got exit ${${prefix}_rc}\nstdout:\n${${prefix}_out}\nstderr:\n${${prefix}_err}")
  endif()
endfunction()
# expect_fail(prefix regex): a non-zero exit and stderr matching regex.
function(expect_fail prefix regex)
  if("${${prefix}_rc}" STREQUAL "0")
    message(FATAL_ERROR "expected failure, got exit 0\nstdout:\n${${prefix}_out}\nstderr:\n${${prefix}_err}")
  endif()
  if(NOT "${${prefix}_err}" MATCHES "${regex}")
    message(FATAL_ERROR "stderr does not match '${regex}' (exit ${${prefix}_rc}):\n${${prefix}_err}")
  endif()
endfunction()
