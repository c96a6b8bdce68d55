//! The correlator: drivers around the engine.
