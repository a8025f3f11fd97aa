//! The Quorate node.
