//! The candle networks of ferbayes (work in progress).
