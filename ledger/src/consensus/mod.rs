//! The Tendermint agreement algorithm as a pure state machine.
