//! World files and the simulator.
