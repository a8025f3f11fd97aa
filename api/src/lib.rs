//! Quorate's REST surface (local API and gateway); not built yet.
