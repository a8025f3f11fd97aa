//! Launches and perturbs local Quorate consortia of real node processes; not built yet.
