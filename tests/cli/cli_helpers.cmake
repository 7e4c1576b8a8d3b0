# Helpers for the command-line smoke tests run in script mode (cmake -P), included by
# cli_tests.cmake and memprofile_tests.cmake. FG is the binary, WORK the scratch directory.

# fg(<result prefix> args...): runs the binary in WORK; sets <prefix>_rc, _out, _err. With
# FG_TIMEOUT set (seconds), a run that takes longer is stopped and its _rc says so.
function(fg prefix)
  set(limit "")
  if(FG_TIMEOUT)
    set(limit TIMEOUT ${FG_TIMEOUT})
  endif()
  execute_process(COMMAND "${FG}" ${ARGN} WORKING_DIRECTORY "${WORK}" ${limit}
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
# expect_refusal(prefix regex): a refusal as the command gives it for a bad value: a non-zero
# exit code (not a signal, not a timeout) and stderr of exactly one line, "error: ...",
# matching regex.
function(expect_refusal prefix regex)
  expect_fail(${prefix} "${regex}")
  if(NOT "${${prefix}_rc}" MATCHES "^[0-9]+$")
    message(FATAL_ERROR "the run ended abnormally (${${prefix}_rc}):\n${${prefix}_err}")
  endif()
  if(NOT "${${prefix}_err}" MATCHES "^error: [^\n]+\n$")
    message(FATAL_ERROR "stderr is not one line 'error: ...':\n${${prefix}_err}")
  endif()
endfunction()
# expect_in(text needle) / expect_not_in(text needle): a plain substring is (not) in text.
function(expect_in text needle)
  string(FIND "${text}" "${needle}" pos)
  if(pos EQUAL -1)
    message(FATAL_ERROR "'${needle}' missing from:\n${text}")
  endif()
endfunction()
function(expect_not_in text needle)
  string(FIND "${text}" "${needle}" pos)
  if(NOT pos EQUAL -1)
    message(FATAL_ERROR "'${needle}' should not be in:\n${text}")
  endif()
endfunction()
