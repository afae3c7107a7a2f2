//! `ferry check`: is everything in place to migrate? Connects to both
//! clusters, gathers what it finds (health, fullness, pool mirroring, peers,
//! rbd-mirror daemons, each listed image), then judges it in pure rules,
//! `assess`, that turn findings into problems with hints.
//!
//! `report` holds what was found, `gather` reads it, `assess` judges it,
//! `text` writes it for people.

mod assess;
mod gather;
mod report;
mod text;

pub use assess::assess;
pub use gather::run;
pub use report::{
    CheckReport, CloudReport, Failure, HostReport, ImageReport, PoolPurpose, PoolReport, Problem,
    Severity, SiteReport,
};
pub use text::render_text;

#[cfg(test)]
mod tests;
