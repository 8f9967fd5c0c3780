// testing/free_port.h: a TCP port on 127.0.0.1 that nothing listens on now (bound, then
// closed), for the servers tests and benchmarks start. 0 if none could be had.
#pragma once

namespace kvault::testing {

int FreeLoopbackPort();

}  // namespace kvault::testing
