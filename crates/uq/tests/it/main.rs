//! Tests of the uncertainty numerics (one test binary, modules per concern): hand-computed
//! values and independent reference scripts (tests/reference/*.py, their output pasted into the
//! modules as `PY_*` constants), and properties on seeded random inputs.

mod calibration;
mod detection;
mod metrics;
mod predictive;
