// The daemon's main loop: front ROUTER, load-balancing broker over the worker pool, shutdown.
#pragma once

#include "paygated/config.hpp"

namespace paygate::daemon {

// Runs paygated with `config` (already validated) until `stop_fd` becomes readable, then drains:
// stops reading the front end, lets in-flight requests finish and delivers their replies, stops
// the workers and returns 0. `stop_fd` is a signalfd in paygated (any other readable fd, e.g. a
// pipe, works the same: up to 128 bytes are read from it). Returns 1 when an endpoint cannot be
// bound. If in-flight work outlives config.shutdown_timeout_ms the process exits with status 1
// at once (workers stuck in the database cannot be joined).
int run_daemon(const Config& config, int stop_fd);

}  // namespace paygate::daemon
