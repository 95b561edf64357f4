# find_package(tess_engine): the installed engine of a `tess export`, as the
# imported static library tess::engine (headers: include/tess_engine).
include("${CMAKE_CURRENT_LIST_DIR}/tess_engineTargets.cmake")
